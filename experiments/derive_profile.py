"""Write a candidate head profile derived from another one, so that `pasta-lens evaluate --profile FILE` can test it.

The transfer study compares mechanisms that keep the document readable while the instruction is emphasised. Two
of them change only *which* heads a profile steers or *how hard*, so they can be written down as ordinary
profiles and then evaluated by the package's own harness (strict metrics, locks, resumable rows), with no
prototype code in the loop:

- ``--alpha-power P``: every head's alpha becomes ``alpha ** P`` (P < 1 is a smaller alpha range: 0.01 -> 0.1 at
  P = 0.5; the heads stay, each is steered more gently);
- ``--instruction-heads FILE --min-preference Q``: keep only the heads whose unsteered instruction preference
  ``instr / (instr + doc)`` (``experiments/instruction_heads.py``, train prompts) is at least Q; the other heads,
  which mostly read the document, are left unsteered;
- ``--last-third``: every head of the last third of the layers instead of the source's heads (the interim set
  that a model without a profile gets), with ``--alpha A`` (one alpha for every head) and ``--schedule S``: the
  candidates that could replace the interim set are written this way.

The new profile keeps the source's model, fingerprint, schedule and scores; its ``method`` says "derived", its
provenance names the source and the transformation, and its ``command`` is this script's command line.

    .venv/bin/python experiments/derive_profile.py --profile smollm2-135m-instruct --alpha-power 0.5 \
        --out runs/candidates/alpha-sqrt.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, help="source profile: a registry name or a path")
    p.add_argument("--alpha-power", type=float, default=1.0)
    p.add_argument("--instruction-heads", default=None, help="the JSON of experiments/instruction_heads.py")
    p.add_argument("--min-preference", type=float, default=0.5)
    p.add_argument("--last-third", action="store_true", help="steer every head of the last third of the layers")
    p.add_argument("--alpha", type=float, default=None, help="one alpha for every head (default: the source's)")
    p.add_argument("--schedule", choices=("all", "prompt"), default=None, help="default: the source's")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.alpha_power <= 0:
        raise SystemExit(f"--alpha-power must be > 0 (1 keeps the alphas); got {args.alpha_power}")
    if args.alpha is not None and not 0.0 < args.alpha <= 1.0:
        raise SystemExit(f"--alpha must be in (0, 1]; got {args.alpha}")
    from pasta_lens import load_profile
    from pasta_lens.plan import head_alphas

    src = load_profile(args.profile)
    alphas = head_alphas(src.heads, src)
    heads = src.heads
    if args.last_third:
        first = src.n_layers - src.n_layers // 3
        heads = tuple((layer, head) for layer in range(first, src.n_layers) for head in range(src.n_heads))
        alphas = {h: args.alpha if args.alpha is not None else src.alpha for h in heads}
    elif args.alpha is not None:
        alphas = {h: args.alpha for h in heads}
    if args.instruction_heads:
        pref = json.loads(Path(args.instruction_heads).read_text())["preference"]
        heads = tuple(h for h in heads if pref[h[0]][h[1]] >= args.min_preference)
        if not heads:
            raise SystemExit(f"no head of {args.profile} has preference >= {args.min_preference}")
    new_alphas = {h: alphas[h] ** args.alpha_power for h in heads}
    derived = dataclasses.replace(
        src,
        heads=heads,
        head_alphas=new_alphas,
        alpha=args.alpha if args.alpha is not None else src.alpha,
        k=len(heads),
        method="derived",
        command=shlex.join(["python", "experiments/derive_profile.py", *(sys.argv[1:] if argv is None else argv)]),
        provenance={
            **dict(src.provenance),
            **({"schedule": args.schedule} if args.schedule else {}),
            "derived_from": args.profile,
            "last_third": args.last_third,
            "alpha_power": args.alpha_power,
            "instruction_heads": args.instruction_heads,
            "min_preference": args.min_preference if args.instruction_heads else None,
        },
    )
    path = derived.save(args.out)
    lo, hi = min(new_alphas.values()), max(new_alphas.values())
    print(f"{path}: {len(heads)} heads, alpha {lo:.3g}-{hi:.3g}, schedule {derived.provenance.get('schedule')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
