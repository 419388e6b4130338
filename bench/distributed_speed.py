"""Examples per second of head profiling (and optionally evaluation) with 1 and 2 processes (torch.distributed).

    python bench/distributed_speed.py [--n-examples 6] [--top-m 8] [--eval-n 4] [--out results/distributed_speed.json]

Runs the same hybrid profiling of ``--n-examples`` JSON-task train examples of SmolLM2-135M-Instruct (no checkpoint,
alpha 0.01) three ways, each in a fresh process tree, and times only ``profile_heads`` (model loading and
example building excluded; a barrier before and after under torchrun):

- ``torchrun --nproc-per-node 2``, 1 thread per process (gloo);
- 1 process, 1 intra-op thread;
- 1 process, 2 intra-op threads (torch's default on a 2-core machine), last: on a busy machine it is the slowest.

Each configuration's result is printed (and --out rewritten) as soon as it is done; one that runs past
``--timeout`` seconds is recorded as such. (The worker's options avoid ``--n``: torchrun would read it as an
abbreviation of its own options.)

It prints examples/second per configuration and the two speed-ups (2 processes vs 1 process with 1 thread, and
vs 1 process with 2 threads), the per-example cost and the mean prompt length, and writes them as JSON to --out.
``--eval-n K`` also times ``evaluate`` (json, zero-shot + pasta on the shipped profile, K examples, 16 new
tokens, batch 2). Figures depend on what else runs on the machine: record the load average with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One process of one configuration: time profile_heads (and evaluate) between barriers; rank 0 prints."""
    torch.set_num_threads(args.threads)
    from pasta_lens import load_model
    from pasta_lens.distributed import process_group_from_env
    from pasta_lens.evaluation import evaluate
    from pasta_lens.profiling import profile_heads
    from pasta_lens.tasks import get_task

    with process_group_from_env() as world:
        model = load_model(args.model)
        examples = list(get_task("json").profiling_examples(model, split="train", n=args.n))

        def barrier() -> None:
            if world.size > 1:
                torch.distributed.barrier()

        barrier()
        start = time.perf_counter()
        scores = profile_heads(model, examples, "hybrid", top_m=args.top_m, progress=False)
        barrier()
        seconds = time.perf_counter() - start
        result = {"processes": world.size, "threads": args.threads, "n": args.n, "top_m": args.top_m,
                  "profile_s": round(seconds, 2), "profile_examples_per_s": round(args.n / seconds, 4),
                  "mean_tokens": sum(ex.tokens.shape[1] for ex in examples) / len(examples),
                  "top5": [list(h) for h in scores.top(5)]}
        if args.eval_n:
            barrier()
            start = time.perf_counter()
            evaluate(model, ["json"], ["zero-shot", "pasta"], n=args.eval_n, profile="smollm2-135m-instruct",
                     batch_size=2, max_new_tokens=16, progress=False)
            barrier()
            seconds = time.perf_counter() - start
            result.update(eval_s=round(seconds, 2), eval_rows_per_s=round(2 * args.eval_n / seconds, 4))
        if world.is_main:
            print("RESULT " + json.dumps(result), flush=True)


def run(config: list[str], env: dict[str, str], timeout: float) -> dict:
    try:
        done = subprocess.run(config, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timed_out_after_s": timeout}
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(config)} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n-examples", dest="n", type=int, default=6, help="JSON train examples (default 6)")
    parser.add_argument("--top-m", type=int, default=8, help="hybrid: heads re-scored exactly (default 8)")
    parser.add_argument("--eval-n", type=int, default=4, help="also time evaluate on this many examples (0: no)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per configuration (default 900)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "distributed_speed.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    common = [__file__, "--worker", "--model", args.model, "--n-examples", str(args.n), "--top-m", str(args.top_m),
              "--eval-n", str(args.eval_n)]
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    configs = {
        "2 processes, 1 thread each": ([str(bindir / "torchrun"), "--nproc-per-node", "2", *common, "--threads", "1"],
                                       "1"),
        "1 process, 1 thread": ([sys.executable, *common, "--threads", "1"], "1"),
        "1 process, 2 threads": ([sys.executable, *common, "--threads", "2"], "2"),
    }
    report: dict = {
        "command": "python bench/distributed_speed.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "results": {},
    }
    for name, (cmd, threads) in configs.items():
        load = os.getloadavg()[0]
        result = run(cmd, {**env, "OMP_NUM_THREADS": threads}, args.timeout)
        result["load_average_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        report["results"][name] = result
        two = report["results"]["2 processes, 1 thread each"]
        for key, label in (("profile_examples_per_s", "profile"), ("eval_rows_per_s", "eval")):
            for base_name, suffix in (("1 process, 1 thread", "1_thread"), ("1 process, 2 threads", "2_threads")):
                base = report["results"].get(base_name, {})
                if key in two and key in base:
                    report[f"{label}_speedup_vs_1_process_{suffix}"] = round(two[key] / base[key], 3)
        tops = {json.dumps(r["top5"]) for r in report["results"].values() if "top5" in r}
        report["same_top5_heads_in_every_configuration"] = len(tops) == 1
        print(f"{name}: {json.dumps(result)}", flush=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))

if __name__ == "__main__":
    main()
