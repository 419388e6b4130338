"""Attribution vs exact head profiling on SmolLM2-135M-Instruct: speed ratio, rank agreement, top-k overlap.

    python bench/profiling_speed.py --n 8 [--data DIR] [--out runs/profiling_speed.md]

The cases are the first n of the CounterFact train file shipped in the package (``--data DIR`` or
``$PASTA_LENS_DATA``: another folder holding ``counterfact/train.json[.gz]``).

Both methods score all 270 heads (30 layers x 9 heads) on the same CounterFact train examples (alpha 0.01):
exact steers every head alone (batched over heads, no extrapolation); attribution uses one forward + backward per
example. Prints time(exact) / time(attribution), the Spearman rank correlation of the two score tables over all
heads, and the overlap of their top-k sets, and writes them (with this command) to --out.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from pasta_lens import load_model, profile_heads
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.spans import emphasize
from pasta_lens.tasks import data_file, default_data_dir, load_counterfact_split

REPO = Path(__file__).resolve().parents[1]


def counterfact_examples(model, path: Path, n: int, start: int = 0) -> list[ProfilingExample]:
    """CounterFact train cases, new fact emphasised; objective log P(new) - log P(old first token)."""
    cases = load_counterfact_split(path)[start:start + n]
    out = []
    for case in cases:
        p = case.prompt
        em = emphasize(model, f"Previously, {p} {case.target_true}. *Currently, {p} {case.target_new}.* {p}")
        ids = lambda s: torch.tensor(model.tokenizer(" " + s, add_special_tokens=False)["input_ids"])  # noqa: E731
        new, old = ids(case.target_new), ids(case.target_true)
        out.append(ProfilingExample(torch.cat([em.tokens, new[None]], 1), em.key_mask,
                                    target_logprob(em.tokens.shape[1], new, old), task="counterfact"))
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="CounterFact train examples (default 8)")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--heads-per-batch", type=int, default=16)
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="folder holding counterfact/train.json[.gz] (default: $PASTA_LENS_DATA, else the "
                             "copy shipped in the package)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "profiling_speed.md")
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python " + " ".join(
        [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])

    torch.manual_seed(0)
    model = load_model("smollm2-135m-instruct")
    examples = counterfact_examples(model, data_file(args.data, "train"), args.n)
    lengths = [ex.tokens.shape[1] for ex in examples]
    with torch.inference_mode():  # warm-up
        model(examples[0].tokens)

    t0 = time.perf_counter()
    att = profile_heads(model, examples, "attribution", alpha=args.alpha, progress=False)
    t_att = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = profile_heads(model, examples, "exact", alpha=args.alpha, heads_per_batch=args.heads_per_batch,
                          progress=False)
    t_exact = time.perf_counter() - t0

    n_heads = att.scores.numel()
    rho = spearman(att.scores, exact.scores)
    pearson = float(torch.corrcoef(torch.stack([att.scores.flatten(), exact.scores.flatten()]))[0, 1])
    overlaps = {k: len(set(att.top(k)) & set(exact.top(k))) for k in (5, 10, 20, 30, 50)}
    lines = [
        "# Head profiling speed: attribution vs exact (SmolLM2-135M-Instruct)",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPU "
        f"cores ({platform.processor() or platform.machine()}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s), fp32, shared with other jobs.  ",
        f"Examples: the first {args.n} CounterFact train cases (tokens per example {min(lengths)}-{max(lengths)}), "
        f"objective log P(new) - log P(old first token), alpha {args.alpha}; both methods score all {n_heads} "
        f"heads (exact: every head steered alone, {args.heads_per_batch} heads per batched forward; no "
        "extrapolation).",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| time attribution ({args.n} examples) | {t_att:.1f} s ({t_att / args.n:.2f} s/example) | |",
        f"| time exact ({args.n} examples) | {t_exact:.1f} s ({t_exact / args.n:.1f} s/example) | |",
        f"| time(exact) / time(attribution) | {t_exact / t_att:.1f} | >= 50 |",
        f"| Spearman rank correlation, attribution vs exact, {n_heads} heads | {rho:.3f} | >= 0.8 |",
        f"| Pearson correlation | {pearson:.3f} | |",
    ] + [f"| top-{k} overlap | {v}/{k} | |" for k, v in overlaps.items()] + [
        f"| best head exact / attribution | {exact.top(1)[0]} {float(exact.scores.max()):+.3f} / "
        f"{att.top(1)[0]} {float(att.scores.max()):+.3f} | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
