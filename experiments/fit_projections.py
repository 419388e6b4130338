"""Fit SEKA's or PRISM-Delta's key projections on a model and save them (one artefact per run).

    python experiments/fit_projections.py --method seka --min-diff 0.08 --out runs/seka.safetensors

The artefact records the model's identity, the settings and this command; pass it to a method spec:
``seka:projections=runs/seka.safetensors`` (``pasta-lens evaluate --baselines ...``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from pasta_lens import load_model, methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--method", required=True, choices=["seka", "prism_delta"])
    parser.add_argument("--n", type=int, default=200, help="synthetic triplets")
    parser.add_argument("--top-pct", type=float, default=None, help="singular-value mass kept (method default)")
    parser.add_argument("--min-diff", type=float, default=None, help="head threshold (method default)")
    parser.add_argument("--values", action="store_true", help="also fit value projections (PRISM-Delta-V)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    start = time.perf_counter()
    proj = methods.fit(
        args.method,
        model,
        n=args.n,
        top_pct=args.top_pct,
        min_diff=args.min_diff,
        values=args.values,
        command=shlex.join([sys.executable, *sys.argv]),
    )
    path = proj.save(args.out)
    print(f"{args.method}: fitted in {time.perf_counter() - start:.0f} s, saved {path}")


if __name__ == "__main__":
    main()
