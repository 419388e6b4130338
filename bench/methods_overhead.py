"""Cost of each steering method on SmolLM2-135M-Instruct at T = 2,048: forward time steered / unsteered, the part
of it that is plumbing, and the fitting time and memory of SEKA / PRISM-Delta. Everything in one run.

For each method (default parameters, every head; SEKA / PRISM-Delta with the projections fitted here) one forward
pass over a 2,048-token prompt, with the method's hooks built beforehand (as ``steer`` and ``generate`` build them
once per call; the building time is printed on its own: for SEKA / PRISM-Delta it includes the fingerprint check of
the projections, one 32-token forward), is timed under ``torch.inference_mode``, in round-robin order with the unsteered pass
and with a *bare* version of the same method (medians over ``--reps``). Times are the process's CPU time
(``time.process_time``, one torch thread): on cores shared with other jobs it counts the work done, not the waiting,
so the ratios hold under load; the wall times are printed beside them.

* ``ours / unsteered``: the steered forward's wall time relative to the plain one;
* ``bare``: the method's own arithmetic as the smallest hook that does it (constants precomputed, no checks, no
  schedule, no head selection), i.e. its necessary work; for SPA the bare version is its two separate forward
  passes plus the logits contrast;
* ``plumbing = (ours - bare) / unsteered``: what pasta_lens adds beyond the method's own work (goal <= 0.05).

Fitting: ``fit(name, model)`` on 200 synthetic triplets (the authors' ``--max_samples 200``), wall time and the peak
resident memory it adds above the loaded model (kernel high-water mark reset before the fit).

    nice -n 10 .venv/bin/python bench/methods_overhead.py [--reps 5] [--tokens 2048] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any, Callable

import torch
from procstat import status_kb

from pasta_lens import emphasize, load_model, methods
from pasta_lens.methods.fit import key_point
from pasta_lens.methods.projections import as_bshd, from_bshd

PROMPT_WORDS = "The committee met on Tuesday to review the budget and the plans for the new library. "
INSTRUCTION = "*Answer only in JSON with the keys name and date.*"


def prompt_of(model: Any, n_tokens: int) -> str:
    """Plain text of exactly ``n_tokens`` tokens (with BOS) with one emphasised sentence in the middle."""
    words = (PROMPT_WORDS * (n_tokens // 8)).split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest half whose prompt fits
        mid = (lo + hi + 1) // 2
        half = " ".join(words[:mid])
        if len(model.tokenizer(f"{half} {INSTRUCTION} {half}".replace("*", ""), add_special_tokens=False)
               ["input_ids"]) <= n_tokens - 1:
            lo = mid
        else:
            hi = mid - 1
    half = " ".join(words[:lo])
    return f"{half} {INSTRUCTION} {half}"


def measured_fit(name: str, model: Any, n: int) -> tuple[Any, float, float, float]:
    """``(projections, CPU seconds, wall seconds, peak MiB above the resident size before)``."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status_kb("VmRSS")
    c0, t0 = time.process_time(), time.perf_counter()
    proj = methods.fit(name, model, n=n, command=f"bench/methods_overhead.py ({name}, n={n})")
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return proj, cpu, wall, (status_kb("VmHWM") - before) / 1024


# --- bare versions: each method's arithmetic and nothing else ---------------------------------------------------
def bare_hooks(name: str, model: Any, em: Any, proj: dict[str, Any]) -> list[tuple[str, Callable]]:
    n_layers, n_keys = model.cfg.n_layers, em.tokens.shape[1]
    span = torch.zeros(n_keys, dtype=torch.bool)
    span[: em.key_mask.shape[1]] = em.key_mask[0]
    if name == "pasta":
        w = torch.where(span, 1.0, 0.01)[None, None, None, :]
    elif name == "instaboost":
        w = torch.where(span, 5.0, 1.0)[None, None, None, :]
    if name in ("pasta", "instaboost"):
        def rescale(p, hook):
            s = p * w
            return s / s.sum(-1, keepdim=True)
        return [(f"blocks.{i}.attn.hook_pattern", rescale) for i in range(n_layers)]
    if name == "guide":
        bias = (span.float() * 1.0)[None, None, None, :]
        return [(f"blocks.{i}.attn.hook_attn_scores", lambda s, hook: s + bias) for i in range(n_layers)]
    if name == "spotlight":
        def spot(p, hook):
            share = (p[..., span].sum() / p.sum()).item()
            if not 0 < share < 0.2:
                return p
            s = p * torch.where(span, 0.2 / share, 1.0)
            return s / s.sum(-1, keepdim=True)
        return [(f"blocks.{i}.attn.hook_pattern", spot) for i in range(n_layers)]
    idx = span.nonzero()[:, 0]
    p = proj[name]
    point, layout = p.key_point, p.layouts["key"]
    n_kv, d = p.n_kv_heads, p.d_head

    def key_hook(i: int) -> Callable:
        if name == "seka":
            pos, neg = p.tensors["pos"][i], p.tensors["neg"][i]
            delta = lambda k: (0.8 * torch.einsum("nhd,hde->nhe", k, pos) + 0.2 * torch.einsum("nhd,hde->nhe", k, neg)) / 2  # noqa: E731,E501
        else:
            diff = p.tensors["diff"][i]
            w = 0.4 * torch.nn.functional.softplus(p.tensors["norm_diffs"][i] - p.settings["min_diff"])[:, None]
            delta = lambda k: w * torch.einsum("nhd,hde->nhe", k, diff)  # noqa: E731

        def hook(x, hook):
            view = as_bshd(x, layout, n_kv, d)
            if view.shape[1] < n_keys:
                return x
            out = view.clone()
            sel = out[0, idx]
            out[0, idx] = sel + delta(sel)
            return from_bshd(out, layout, x.shape)
        return hook

    return [(f"blocks.{layer}.attn.{point}", key_hook(i)) for i, layer in enumerate(p.layers)]


def bare_spa(model: Any, em: Any) -> torch.Tensor:
    """SPA's necessary work: the prompt's pass, the anchor-free pass, the contrast."""
    span = em.key_mask[0]

    def hide(s, hook):
        return s.masked_fill(span[None, None, None, : s.shape[-1]], torch.finfo(s.dtype).min)

    main = model(em.tokens)
    with model.hooks(fwd_hooks=[(f"blocks.{i}.attn.hook_attn_scores", hide) for i in range(model.cfg.n_layers)]):
        aux = model(em.tokens)
    return methods.spa.combine(main.float(), aux.float(), 1.4, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit-n", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model("smollm2-135m-instruct")
    print(f"model smollm2-135m-instruct (bridge), torch threads {args.threads}, {args.reps} reps")

    proj = {}
    for name in ("seka", "prism_delta"):
        proj[name], cpu, wall, mib = measured_fit(name, model, args.fit_n)
        s = proj[name].settings
        steered = int((proj[name].tensors["norm_diffs"] >= s["min_diff"]).sum())
        print(f"fit {name:12s} {cpu:7.1f} s CPU ({wall:.0f} s wall)   peak +{mib:6.0f} MiB   {s['n_triplets']} triplets, {s['n_tokens']} "
              f"answer tokens, {steered}/{proj[name].tensors['norm_diffs'].numel()} kv heads above min_diff "
              f"{s['min_diff']}")

    em = emphasize(model, prompt_of(model, args.tokens))
    print(f"prompt: {em.tokens.shape[1]} tokens, {int(em.key_mask.sum())} emphasised; key point {key_point(model)}")
    names = methods.available()
    params = {"seka": {"projections": proj["seka"]}, "prism_delta": {"projections": proj["prism_delta"]}}
    runs: dict[str, Callable[[], Any]] = {"unsteered": lambda: model(em.tokens)}
    build = {}
    for name in names:  # hooks are built once, as steer / generate do; building is timed on its own
        c0 = time.process_time()
        fwd = methods.hooks(name, model, em, **params.get(name, {}))
        build[name] = time.process_time() - c0
        tokens = methods.spa_batch(em.tokens) if methods.get(name).passes == 2 else em.tokens
        runs[name] = (lambda f=fwd, t=tokens: model.run_with_hooks(t, fwd_hooks=f)[:1])
        if name == "spa":
            runs["bare spa"] = lambda: bare_spa(model, em)
        else:
            fwd = bare_hooks(name, model, em, proj)
            runs[f"bare {name}"] = (lambda f=fwd: model.run_with_hooks(em.tokens, fwd_hooks=f))
    times: dict[str, list[float]] = {k: [] for k in runs}
    walls: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for key in runs:  # warm-up
            runs[key]()
        for _ in range(args.reps):
            for key, fn in runs.items():
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                times[key].append(time.process_time() - c0)
                walls[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["unsteered"]
    print(f"unsteered forward {base:.3f} s CPU, {statistics.median(walls['unsteered']):.3f} s wall "
          f"(medians of {args.reps})")
    print("building the hooks (once per steer / generate call), CPU s: "
          + ", ".join(f"{name} {build[name]:.3f}" for name in names))
    print(f"{'method':12s} {'ours/unsteered':>15s} {'bare/unsteered':>15s} {'plumbing':>9s}  goal plumbing <= 0.05"
          "   (CPU time; wall-time ratios ours / bare)")
    wall = {k: statistics.median(v) / statistics.median(walls["unsteered"]) for k, v in walls.items()}
    for name in names:
        ours, bare = med[name] / base, med[f"bare {name}"] / base
        print(f"{name:12s} {ours:15.3f} {bare:15.3f} {ours - bare:+9.3f}  {'met' if ours - bare <= 0.05 else 'NOT met':7s}"
              f"   {wall[name]:.3f} / {wall[f'bare {name}']:.3f}")


if __name__ == "__main__":
    main()
