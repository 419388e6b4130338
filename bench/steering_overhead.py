"""Cost of PASTA steering on SmolLM2-135M-Instruct: generation time and forward peak memory, steered / unsteered.

Both ratios are measured in one run, alternating steered and unsteered repetitions so that machine noise hits
both alike (medians are reported):

* time: greedy KV-cached generation of 64 new tokens after a 128-token prompt, 64 steered heads (goal <= 1.05);
* memory: peak resident memory of one forward pass over 1,024 tokens (goal <= 1.05), each pass in a fresh
  process (so no allocator state carries over), read from the kernel's high-water mark (VmHWM, reset after the
  model is loaded via /proc/self/clear_refs). Printed two ways: the whole process (weights included) and only
  the increment the forward pass adds above the loaded model.

    .venv/bin/python bench/steering_overhead.py [--reps 5] [--backend bridge|hooked|both]

``--backend hooked`` (and ``both``, which runs the bridge then the HookedTransformer of the same weights and
prints each) needs TransformerLens 3.x: run it with ``.venv-tl3/bin/python``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time

import torch
from procstat import status_kb

from pasta_lens import emphasize, load_model, steer
from pasta_lens.generation import generate_tokens


def heads_64(n_layers: int, n_heads: int, seed: int = 0) -> list[tuple[int, int]]:
    pairs = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return sorted(random.Random(seed).sample(pairs, 64))


def prompt_of(model, n_tokens: int) -> str:
    """Plain text of about ``n_tokens`` tokens with one emphasised sentence in the middle."""
    words = ("The committee met on Tuesday to review the budget and the plans for the new library. " * 200).split()
    half = " ".join(words[: n_tokens // 2])
    text = f"{half} *Answer only in JSON with the keys name and date.* {half}"
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) > n_tokens - 1:  # -1 for BOS
        half = " ".join(half.split()[:-1])
        text = f"{half} *Answer only in JSON with the keys name and date.* {half}"
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return text


def peak_forward_kb(model, tokens, hooks_ctx) -> tuple[int, int]:
    """(process peak, increment over the resident size before the pass) in kB for one forward."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status_kb("VmRSS")
    with hooks_ctx, torch.inference_mode():
        logits = model(tokens)
        del logits
    peak = status_kb("VmHWM")
    return peak, peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--backend", choices=("bridge", "hooked", "both"), default="bridge",
                        help="TransformerLens model class to measure (both: one after the other)")
    parser.add_argument("--memory-worker", choices=("steered", "unsteered"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        return memory_worker(args.memory_worker, args.backend)
    for backend in (("bridge", "hooked") if args.backend == "both" else (args.backend,)):
        print(f"=== backend: {backend} ===")
        measure(backend, args)


def measure(backend: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = load_model("smollm2-135m-instruct", backend=backend)
    heads = heads_64(model.cfg.n_layers, model.cfg.n_heads)
    n_layers_steered = len({layer for layer, _ in heads})

    em = emphasize(model, prompt_of(model, 128))
    print(f"prompt: {em.tokens.shape[1]} tokens, {int(em.key_mask.sum())} emphasised; "
          f"{len(heads)} heads in {n_layers_steered} layers; {args.new_tokens} new tokens; {args.reps} reps")
    generate_tokens(model, em, 4)  # warm-up
    times = {"unsteered": [], "steered": []}
    for _ in range(args.reps):
        for mode in ("unsteered", "steered"):
            ctx = steer(model, heads, em) if mode == "steered" else model.hooks(fwd_hooks=[])
            with ctx:
                t0 = time.perf_counter()
                generate_tokens(model, em, args.new_tokens, stop_at_eos=False)
                times[mode].append(time.perf_counter() - t0)
    t_un, t_st = statistics.median(times["unsteered"]), statistics.median(times["steered"])
    print(f"generation time  unsteered {t_un:.3f} s   steered {t_st:.3f} s   ratio {t_st / t_un:.3f}  (goal <= 1.05)")

    mem = {"unsteered": [], "steered": []}
    for _ in range(max(2, args.reps // 2)):
        for mode in ("unsteered", "steered"):
            out = subprocess.run([sys.executable, __file__, "--memory-worker", mode, "--backend", backend], check=True,
                                 capture_output=True, text=True).stdout
            mem[mode].append(json.loads(out.strip().splitlines()[-1]))
    (p_un, i_un), (p_st, i_st) = ([statistics.median(r[k] for r in mem[m]) for k in ("peak", "increment")]
                                  for m in ("unsteered", "steered"))
    n_long = mem["steered"][0]["n_tokens"]
    print(f"forward at {n_long} tokens, peak RSS  unsteered {p_un / 1024:.0f} MiB   "
          f"steered {p_st / 1024:.0f} MiB   ratio {p_st / p_un:.3f}  (goal <= 1.05)")
    print(f"  increment over the loaded model  unsteered {i_un / 1024:.0f} MiB   steered {i_st / 1024:.0f} MiB   "
          f"ratio {i_st / i_un:.3f}")


def memory_worker(mode: str, backend: str) -> None:
    model = load_model("smollm2-135m-instruct", backend=backend)
    heads = heads_64(model.cfg.n_layers, model.cfg.n_heads)
    long = emphasize(model, prompt_of(model, 1024))
    ctx = steer(model, heads, long) if mode == "steered" else model.hooks(fwd_hooks=[])
    peak, increment = peak_forward_kb(model, long.tokens, ctx)
    print(json.dumps({"peak": peak, "increment": increment, "n_tokens": long.tokens.shape[1]}))


if __name__ == "__main__":
    main()
