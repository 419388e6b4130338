"""Measure how far the behavioural fingerprint moves, and stamp it into a shipped profile.

    # the tolerance table of results/head_selection.md, section 6 (needs TransformerLens 3.9 for the hooked rows):
    OMP_NUM_THREADS=2 .venv-tl3/bin/python scripts/fingerprint.py measure
    # add the fingerprint of the offline SmolLM2 (bridge, fp32) to profiles/smollm2-135m-instruct.json:
    .venv/bin/python scripts/fingerprint.py stamp profiles/smollm2-135m-instruct.json

``measure`` loads SmolLM2-135M-Instruct on every backend / dtype / processing combination the installed
TransformerLens offers, and copies with Gaussian noise added to every weight (``w + eps * std(w) * N(0, 1)``,
a stand-in for "other weights of the same shape", e.g. a light fine-tune), and prints each one's fingerprint
distance (max |delta log-prob| over the probe) to the bridge fp32 reference.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from pasta_lens.backends import available_backends, bridge_class, hooked_from_hf
from pasta_lens.fingerprint import ModelFingerprint, tolerance
from pasta_lens.models import DEFAULT_MODEL, OFFLINE_MODELS, load_hf
from pasta_lens import HeadProfile


def _bridge(hf, tok, dtype):
    return bridge_class().boot_transformers(OFFLINE_MODELS[DEFAULT_MODEL]["hub_name"], hf_model=hf, tokenizer=tok,
                                            dtype=dtype).eval()


def _noisy(hf, eps: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(eps * p.float().std() * torch.randn(p.shape, generator=gen).to(p.dtype))
    return hf


def measure() -> None:
    ref = ModelFingerprint.of(_bridge(*load_hf(DEFAULT_MODEL), torch.float32))
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        if dtype != torch.float32:
            rows.append((f"bridge {dtype}", ref.distance(_bridge(*load_hf(DEFAULT_MODEL, dtype), dtype))))
        if "hooked" in available_backends():
            for processing in (False, True):
                hf, tok = load_hf(DEFAULT_MODEL, dtype)
                model = hooked_from_hf(hf, tok, processing=processing, dtype=dtype)
                rows.append((f"hooked {dtype} processing={processing}", ref.distance(model)))
    for eps in (1e-3, 3e-3, 1e-2, 3e-2):
        hf, tok = load_hf(DEFAULT_MODEL)
        rows.append((f"other weights: bridge fp32, noise eps={eps:g}", ref.distance(_bridge(_noisy(hf, eps), tok,
                                                                                           torch.float32))))
    print(f"reference: bridge torch.float32; probe {len(ref.probe)} tokens")
    print("| model | max abs delta log-prob | tolerance | accepted |\n|---|---|---|---|")
    for name, dist in rows:
        atol = tolerance("float32", "bfloat16" if "bfloat16" in name else "float32")
        print(f"| {name} | {dist:.4f} | {atol} | {'yes' if dist <= atol else 'no'} |")


def stamp(path: str) -> None:
    model = _bridge(*load_hf(DEFAULT_MODEL), torch.float32)
    profile = HeadProfile.load(path)
    profile.validate_for(model)  # the old weights-hash check: stamp only the model the profile was made on
    data = profile.to_dict()
    data["fingerprint"] = ModelFingerprint.of(model).to_dict()
    HeadProfile.from_dict(data).save(path)
    print(f"{path}: fingerprint of {DEFAULT_MODEL} (bridge, fp32) added")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("measure", help="print the fingerprint distance table")
    st = sub.add_parser("stamp", help="add the SmolLM2 fingerprint to a profile file")
    st.add_argument("path")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    measure() if args.command == "measure" else stamp(args.path)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
