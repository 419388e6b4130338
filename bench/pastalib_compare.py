"""pasta-lens side by side with the official PASTA code (``pastalib==0.1.3``) on SmolLM2-135M-Instruct, CPU.

Both run in one process on the same tokens, heads and alpha, alternating repetitions (``generate``: in ABBA
order, every other repetition reversed) so that machine noise hits all alike (medians reported; wall time and
this process's CPU time, which a loaded machine disturbs less).
pastalib steers its own, separately loaded plain Hugging Face copy of the weights (the bridge swaps the HF model's
attention modules in place, so it cannot share one).

Three parts (``--part``):

* ``generate``: greedy KV-cached generation of 64 new tokens after a 120-token prompt, 64 steered heads, for
  pasta-lens (its default engine, ``pasta_lens.hf_engine``: HF's ``generate`` on a plain twin of the bridge's
  weights, the twin built in every call; TransformerLens' ``generate`` on the bridge with the hooks; and HF's
  ``generate`` loop run on the bridged model, hooks firing) and pastalib (HF ``generate`` on the plain copy),
  steered and unsteered.
* ``forward``: one forward pass at T = 1,024 and 2,048 tokens with 16 / 64 / 270 steered heads: steered /
  unsteered time for pasta-lens' ``hook_pattern`` edit (default), its ``where="scores"`` variant, and pastalib.
* ``profile``: cProfile of one 16-token steered generation on each path: function calls, time, and the
  functions with the most own time (where the bridge's extra time goes).
* ``hook``: the HF engine's steering pre-hook alone, microseconds per call on a KV-cached decode step's mask
  (``[1, 1, 1, 180]``, 3 of 9 heads steered, every-step schedule) beside a hook that does nothing: the cost it
  adds per steered layer and generated token (no model needed).
* ``memory``: peak memory of one steered forward at T = 512 / 1,024 / 2,048, each measurement in a fresh
  subprocess; read from the kernel's resident-set high-water mark (VmHWM, reset after the model is loaded via
  /proc/self/clear_refs), reported as the increment over the loaded model.

    .venv/bin/python bench/pastalib_compare.py --part generate --reps 5
    .venv/bin/python bench/pastalib_compare.py --part generate --reps 12 --paths "HF engine"   # the default only
    .venv/bin/python bench/pastalib_compare.py --part forward --reps 3
    .venv/bin/python bench/pastalib_compare.py --part memory
    .venv/bin/python bench/pastalib_compare.py --part profile
    .venv/bin/python bench/pastalib_compare.py --part hook
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
from procstat import status_kb

from pasta_lens import emphasize, load_model, steer
from pasta_lens.generation import generate_tokens
from pasta_lens.hf_engine import hf_generate_tokens
from pasta_lens.plan import plan_from_spec
from pasta_lens.models import offline_gguf_path

SPAN = "Answer only in JSON with the keys name and date."


def sample_heads(n: int, n_layers: int = 30, n_heads: int = 9, seed: int = 0) -> list[tuple[int, int]]:
    pairs = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return sorted(random.Random(seed).sample(pairs, n)) if n < len(pairs) else pairs


def head_config(heads: list[tuple[int, int]]) -> dict[int, list[int]]:
    """pastalib's head_config ``{layer: [heads]}``."""
    config: dict[int, list[int]] = {}
    for layer, head in heads:
        config.setdefault(layer, []).append(head)
    return config


def prompt_text(tok, n_tokens: int) -> str:
    """Plain text of at most ``n_tokens`` tokens (no BOS) with SPAN in the middle."""
    words = ("The committee met on Tuesday to review the budget and the plans for the new library. " * 400).split()
    lo, hi = 0, len(words)
    while lo < hi:  # the largest half-length that fits
        mid = (lo + hi + 1) // 2
        half = " ".join(words[:mid])
        if len(tok(f"{half} {SPAN} {half}", add_special_tokens=False)["input_ids"]) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    half = " ".join(words[:lo])
    return f"{half} {SPAN} {half}"


def load_hf_copy():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, gguf_file = offline_gguf_path("smollm2-135m-instruct")
    hf = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    return hf, AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)


class Pair:
    """The bridge and a plain HF copy on the same prompt: everything a timed run needs."""

    def __init__(self, model, hf, tok, n_tokens: int):
        from pastalib.pasta import PASTA

        self.model, self.hf, self.tok = model, hf, tok
        self.text = prompt_text(tok, n_tokens)
        self.em = emphasize(model if model is not None else tok, self.text, substrings=[SPAN], prepend_bos=False)
        self.pasta_cls = PASTA
        probe = PASTA(model=hf, tokenizer=tok, head_config={0: [0]}, alpha=0.01)
        self.inputs, self.offsets = probe.inputs_from_batch([self.text])
        if not torch.equal(self.inputs["input_ids"], self.em.tokens):
            raise RuntimeError("pasta-lens and pastalib tokenised the prompt differently")

    def lens_ctx(self, heads, where="pattern"):
        return steer(self.model, heads, self.em, 0.01, where=where) if heads else nullcontext()

    def pastalib_ctx(self, heads):
        if not heads:
            return nullcontext()
        pasta = self.pasta_cls(model=self.hf, tokenizer=self.tok, head_config=head_config(heads), alpha=0.01)
        return pasta.apply_steering(model=self.hf, strings=[self.text], substrings=[SPAN], model_input=self.inputs,
                                    offsets_mapping=self.offsets)


def timed(fn) -> tuple[float, float]:
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def median_pair(runs):
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def part_generate(pair: Pair, reps: int, new_tokens: int, paths: tuple[str, ...] = ()) -> None:
    """``paths``: only the pasta-lens paths whose name contains one of these (pastalib always runs)."""
    heads = sample_heads(64)
    em, model, hf = pair.em, pair.model, pair.hf
    hf_kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                     pad_token_id=pair.tok.pad_token_id)

    def tl_loop():
        return generate_tokens(model, em, new_tokens, stop_at_eos=False)

    def hf_loop_on_bridge():
        return model.original_model.generate(em.tokens, attention_mask=em.attention_mask, **hf_kwargs)[
            :, em.tokens.shape[1]:]

    def pastalib_run():
        return hf.generate(**pair.inputs, **hf_kwargs)[:, em.tokens.shape[1]:]

    def hf_engine(steered: bool):  # what generate(engine="auto") runs on the bridge: the twin built per call
        plan = plan_from_spec(heads, 0.01) if steered else None
        return lambda: hf_generate_tokens(model, em, plan, max_new_tokens=new_tokens, stop_at_eos=False)

    configs = {  # name -> (context factory, run)
        "pasta-lens HF engine (default), unsteered": (lambda: nullcontext(), hf_engine(False)),
        "pasta-lens HF engine (default), steered": (lambda: nullcontext(), hf_engine(True)),
        "pasta-lens TL generate, unsteered": (lambda: nullcontext(), tl_loop),
        "pasta-lens TL generate, steered": (lambda: pair.lens_ctx(heads), tl_loop),
        "pasta-lens HF loop on bridge, unsteered": (lambda: nullcontext(), hf_loop_on_bridge),
        "pasta-lens HF loop on bridge, steered": (lambda: pair.lens_ctx(heads), hf_loop_on_bridge),
        "pastalib (HF copy), unsteered": (lambda: nullcontext(), pastalib_run),
        "pastalib (HF copy), steered": (lambda: pair.pastalib_ctx(heads), pastalib_run),
    }
    if paths:
        configs = {name: c for name, c in configs.items()
                   if name.startswith("pastalib") or any(p in name for p in paths)}
    outputs, times = {}, {name: [] for name in configs}
    with torch.inference_mode():
        for name, (ctx, run) in configs.items():  # warm-up, and the tokens each path generates
            with ctx():
                outputs[name] = run()
        for rep in range(reps):
            order = list(configs.items())
            if rep % 2:  # ABBA order: a drift in machine speed within a pair of reps hits every config alike
                order.reverse()
            for name, (ctx, run) in order:
                with ctx():
                    times[name].append(timed(run))
    print(f"prompt {em.tokens.shape[1]} tokens ({int(em.key_mask.sum())} emphasised), 64 heads in "
          f"{len(head_config(heads))} layers, {new_tokens} new greedy tokens, KV cache, {reps} alternating reps, "
          f"{torch.get_num_threads()} thread(s)")
    med = {name: median_pair(runs) for name, runs in times.items()}
    for name, (wall, cpu) in med.items():
        print(f"  {name:44s} wall {wall:6.2f} s   cpu {cpu:6.2f} s")

    def ratio(a, b):
        return f"wall {med[a][0] / med[b][0]:.3f}  cpu {med[a][1] / med[b][1]:.3f}"

    st, un = "steered", "unsteered"
    for loop in ("HF engine (default)", "TL generate", "HF loop on bridge"):
        lens = f"pasta-lens {loop}"
        if f"{lens}, {st}" not in med:
            continue
        print(f"  {lens}: steered / unsteered {ratio(f'{lens}, {st}', f'{lens}, {un}')};  "
              f"steered / pastalib steered {ratio(f'{lens}, {st}', f'pastalib (HF copy), {st}')}")
    print(f"  pastalib: steered / unsteered {ratio(f'pastalib (HF copy), {st}', f'pastalib (HF copy), {un}')}")
    same = {name: torch.equal(out, outputs["pastalib (HF copy), steered"])
            for name, out in outputs.items() if name.endswith(", steered")}
    print(f"  steered tokens equal pastalib's: {same}")


def part_forward(model, hf, tok, reps: int, lengths=(1024, 2048), head_counts=(16, 64, 270)) -> None:
    for n_tokens in lengths:
        pair = Pair(model, hf, tok, n_tokens)
        configs = {"lens unsteered": (lambda: nullcontext(), "lens"),
                   "pastalib unsteered": (lambda: nullcontext(), "hf")}
        for n in head_counts:
            heads = sample_heads(n)
            configs[f"lens pattern {n}"] = (lambda h=heads: pair.lens_ctx(h), "lens")
            configs[f"lens scores {n}"] = (lambda h=heads: pair.lens_ctx(h, "scores"), "lens")
            configs[f"pastalib {n}"] = (lambda h=heads: pair.pastalib_ctx(h), "hf")
        runs = {"lens": lambda: pair.model(pair.em.tokens), "hf": lambda: pair.hf(**pair.inputs)}
        times = {name: [] for name in configs}
        with torch.inference_mode():
            for _ in range(reps):
                for name, (ctx, which) in configs.items():
                    with ctx():
                        times[name].append(timed(runs[which]))
        med = {name: median_pair(r) for name, r in times.items()}
        print(f"T = {pair.em.tokens.shape[1]}  ({reps} alternating reps; steered / unsteered of the same model, "
              "wall and cpu)")
        print(f"  unsteered: bridge {med['lens unsteered'][0]:.2f} s, HF copy {med['pastalib unsteered'][0]:.2f} s "
              "(wall)")
        for n in head_counts:
            cells = []
            for label, key, base in (("pattern", f"lens pattern {n}", "lens unsteered"),
                                     ("scores", f"lens scores {n}", "lens unsteered"),
                                     ("pastalib", f"pastalib {n}", "pastalib unsteered")):
                cells.append(f"{label} {med[key][0] / med[base][0]:.3f} / {med[key][1] / med[base][1]:.3f}")
            print(f"  {n:3d} heads   " + "   ".join(cells))


def part_profile(pair: Pair, new_tokens: int = 16, top: int = 12) -> None:
    import cProfile
    import io
    import pstats

    heads = sample_heads(64)
    em, model, hf = pair.em, pair.model, pair.hf
    hf_kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                     pad_token_id=pair.tok.pad_token_id)
    paths = {
        "pasta-lens, TL generate": (lambda: pair.lens_ctx(heads),
                                    lambda: generate_tokens(model, em, new_tokens, stop_at_eos=False)),
        "pasta-lens, HF loop on bridge": (lambda: pair.lens_ctx(heads), lambda: model.original_model.generate(
            em.tokens, attention_mask=em.attention_mask, **hf_kwargs)),
        "pastalib, HF copy": (lambda: pair.pastalib_ctx(heads), lambda: hf.generate(**pair.inputs, **hf_kwargs)),
    }
    with torch.inference_mode():
        for name, (ctx, run) in paths.items():
            with ctx():
                run()  # warm-up
                prof = cProfile.Profile()
                prof.enable()
                run()
                prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            print(f"== {name}: {stats.total_calls} function calls, {stats.total_tt:.2f} s "
                  f"({new_tokens} steered tokens, profiler on)")
            stats.sort_stats("tottime").print_stats(top)
            body = out.getvalue().splitlines()
            start = next(i for i, line in enumerate(body) if line.strip().startswith("ncalls"))
            print("\n".join(body[start:start + top + 1]))


def part_hook(calls: int = 20000, n_prompt: int = 120, n_keys: int = 180) -> None:
    from pasta_lens.hf_engine import steering_pre_hook
    from pasta_lens.schedule import Schedule

    key_mask = torch.zeros(1, n_prompt, dtype=torch.bool)
    key_mask[:, 50:62] = True
    hooks = {
        "steering pre-hook": steering_pre_hook(0, key_mask, [1, 4, 7], [0.01] * 3, 9, "exclude",
                                                Schedule.parse("all"), n_prompt + 64),
        "no-op hook": lambda module, args, kwargs: (args, kwargs),
    }
    mask = torch.zeros(1, 1, 1, n_keys)
    with torch.inference_mode():
        for name, hook in hooks.items():
            for _ in range(500):
                hook(None, (), {"attention_mask": mask})
            start = time.perf_counter()
            for _ in range(calls):
                hook(None, (), {"attention_mask": mask})
            print(f"  {name:18s} {(time.perf_counter() - start) / calls * 1e6:6.1f} us per call "
                  f"(mask {list(mask.shape)}, {calls} calls)")


def memory_worker(mode: str, n_tokens: int) -> None:
    """One forward in this fresh process; print the resident high-water increment over the loaded model."""
    torch.set_num_threads(1)
    if mode.startswith("lens"):
        from transformers import AutoTokenizer

        model = load_model("smollm2-135m-instruct")
        directory, gguf_file = offline_gguf_path("smollm2-135m-instruct")
        # pastalib's tokenisation is only checked here (never run): the bridged HF model passes its type check.
        pair = Pair(model, model.original_model, AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file),
                    n_tokens)
    else:
        hf, tok = load_hf_copy()
        pair = Pair(None, hf, tok, n_tokens)
    heads = sample_heads(64)
    ctx = {"lens unsteered": nullcontext, "pastalib unsteered": nullcontext,
           "lens pattern": lambda: pair.lens_ctx(heads), "lens scores": lambda: pair.lens_ctx(heads, "scores"),
           "pastalib": lambda: pair.pastalib_ctx(heads)}[mode]
    run = (lambda: pair.model(pair.em.tokens)) if mode.startswith("lens") else (lambda: pair.hf(**pair.inputs))
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = status_kb("VmRSS")
    with ctx(), torch.inference_mode():
        out = run()
        del out
    print(json.dumps({"increment_kb": status_kb("VmHWM") - before, "n_tokens": pair.em.tokens.shape[1]}))


def part_memory(reps: int, lengths=(512, 1024, 2048)) -> None:
    modes = ("lens unsteered", "lens pattern", "lens scores", "pastalib unsteered", "pastalib")
    print("peak resident-memory increment of one forward over the loaded model (VmHWM - VmRSS before), "
          f"fresh subprocess per measurement, 64 steered heads, median of {reps}")
    for n_tokens in lengths:
        res = {mode: [] for mode in modes}
        for _ in range(reps):
            for mode in modes:
                out = subprocess.run([sys.executable, __file__, "--memory-worker", mode, str(n_tokens)],
                                     check=True, capture_output=True, text=True).stdout
                res[mode].append(json.loads(out.strip().splitlines()[-1])["increment_kb"])
        med = {mode: statistics.median(v) / 1024 for mode, v in res.items()}
        print(f"  T={n_tokens:5d}  " + "   ".join(f"{mode} {mib:.0f} MiB" for mode, mib in med.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("generate", "forward", "memory", "profile", "hook"), required=False)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help="forward / memory: prompt lengths (default: forward 1024 2048, memory 512 1024 2048)")
    parser.add_argument("--heads", type=int, nargs="+", default=[16, 64, 270], help="forward: steered head counts")
    parser.add_argument("--paths", nargs="+", default=[],
                        help="generate: only the pasta-lens paths whose name contains one of these, e.g. "
                             "'HF engine' (pastalib always runs)")
    parser.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        return memory_worker(args.memory_worker[0], int(args.memory_worker[1]))
    if args.part is None:
        parser.error("choose --part generate, forward, memory, profile or hook")
    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"torch {torch.__version__}")
    if args.part == "memory":
        return part_memory(args.reps, args.lengths or (512, 1024, 2048))
    if args.part == "hook":
        return part_hook()
    model = load_model("smollm2-135m-instruct")
    hf, tok = load_hf_copy()
    if args.part == "generate":
        part_generate(Pair(model, hf, tok, 120), args.reps, args.new_tokens, tuple(args.paths))
    elif args.part == "profile":
        part_profile(Pair(model, hf, tok, 120))
    else:
        part_forward(model, hf, tok, args.reps, args.lengths or (1024, 2048), args.heads)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
