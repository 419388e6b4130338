"""One-GPU readiness check of pasta_lens, ending in a one-line verdict (run by ``bench/gpu_check.sh``).

For each dtype (fp32, then bf16) the model is loaded with ``load_model(name, device=..., dtype=...)`` and:

1. **steering parity**: a steered forward (every head of the last third of the layers, alpha 0.01) against an
   independent additive reference written here (``log(alpha)`` added on ``hook_attn_scores`` of the scaled keys,
   the official code's form); the largest logit difference, and the steering effect (steered vs plain);
2. **cached == uncached**: greedy steered generation with the KV cache and without it (the hooks loop), token by
   token; and the engine ``generate(engine="auto")`` picks: the fast engine in fp32 (its text must equal the
   hooks loop's), refused in bf16 (the two round differently);
3. **one attribution profile**: ``profile_heads(method="attribution")`` on a few CounterFact train examples
   (one forward + backward each): finite scores, and the top head's exact change has the attribution's sign;
4. **a small evaluation**: ``evaluate`` of zero-shot and PASTA on CounterFact test examples;
5. **peak memory**: ``torch.cuda.max_memory_allocated`` per dtype (on CPU: the process's peak resident size).

PASS needs: fp32 parity <= 1e-3 and bf16 parity <= 0.25 (bf16 logits carry ~3 significant digits; each
reference rounds on its own path), a steering effect > 0.01 in both, fp32 cached == uncached, the fast engine's
text == the hooks' text in fp32 and the fast engine refused in bf16, finite attribution with the top head's
sign confirmed, an evaluation that ran, and (on a GPU) all of it within ``--budget-s`` seconds. bf16
cached-vs-uncached agreement is reported, not required (rounding can flip a near-tie).

    bench/gpu_check.sh                                     # GPU, SmolLM2-135M-Instruct (offline), < 5 minutes
    bench/gpu_check.sh --device cpu --model DIR --fast     # the same checks on CPU, e.g. a tiny saved model
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from typing import Any, Callable

import torch

PROMPT = "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* Toko Yasuda plays the"
ALPHA = 0.01
FP32_TOL, BF16_TOL = 1e-3, 0.25


def additive_reference(heads: list[tuple[int, int]], key_mask: torch.Tensor, alpha: float) -> list:
    """``log(alpha)`` on the pre-softmax scores of the steered heads at the prompt keys outside the span."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def make(hs: list[int]) -> Callable:
        def hook(scores: torch.Tensor, hook: Any) -> torch.Tensor:
            n = key_mask.shape[1]
            bias = torch.zeros(scores.shape[-1], dtype=torch.float32, device=scores.device)
            bias[:n] = (~key_mask[0].to(scores.device)).float() * math.log(alpha)
            out = scores.clone()
            out[:, hs] = (scores[:, hs].float() + bias).to(scores.dtype)
            return out
        return hook

    return [(f"blocks.{layer}.attn.hook_attn_scores", make(hs)) for layer, hs in sorted(by_layer.items())]


def peak_memory(device: str) -> float:
    """GiB: the GPU allocator's peak since the last reset, or the process's peak resident size on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def check_dtype(name: str, device: str, dtype: torch.dtype, args: argparse.Namespace) -> dict[str, Any]:
    from pasta_lens import emphasize, generate, load_model, pasta_hooks, profile_heads, steer
    from pasta_lens.evaluation import evaluate
    from pasta_lens.generation import generate_tokens, select_engine
    from pasta_lens.registry import interim_heads
    from pasta_lens.plan import resolve_plan
    from pasta_lens.profiling.scoring import exact_scores
    from pasta_lens.tasks import get_task

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out: dict[str, Any] = {}
    start = time.perf_counter()
    model = load_model(name, device=device, dtype=dtype)
    out["load_s"] = time.perf_counter() - start
    heads = list(interim_heads(model))
    plan = resolve_plan(model, heads, ALPHA)
    em = emphasize(model, PROMPT)
    with torch.inference_mode():
        ours = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(plan, em)).float()
        ref = model.run_with_hooks(em.tokens, fwd_hooks=additive_reference(heads, em.key_mask, ALPHA)).float()
        plain = model(em.tokens).float()
    out["parity"] = float((ours - ref).abs().max())
    out["effect"] = float((ours - plain).abs().max())

    with steer(model, plan, em):
        cached = generate_tokens(model, em, args.n_new, stop_at_eos=False)
        uncached = generate_tokens(model, em, args.n_new, stop_at_eos=False, use_past_kv_cache=False)
    out["cached_equal"] = int((cached == uncached).all(0).long().cumprod(0).sum())  # equal prefix length
    engine, _, why = select_engine(model)
    out["engine"] = engine if engine == "hf" else "hooks, fast engine refused" + (" (not fp32)" if "fp32" in why else
                                                                                  f" ({why[:60]})")
    if engine == "hf":
        fast = generate(model, PROMPT, plan, max_new_tokens=args.n_new, stop_at_eos=False)
        hooks = generate(model, PROMPT, plan, max_new_tokens=args.n_new, stop_at_eos=False, engine="hooks")
        out["fast_equal"] = fast == hooks

    task = get_task("counterfact")
    examples = task.profiling_examples(model, split="train", n=args.examples)
    start = time.perf_counter()
    scores = profile_heads(model, examples, method="attribution", alpha=ALPHA, progress=False)
    out["attribution_s"] = time.perf_counter() - start
    out["attribution_finite"] = bool(torch.isfinite(scores.scores).all())
    top = scores.top(1)[0]
    exact = sum(float(exact_scores(model, ex, ALPHA, [top])[1][0]) for ex in examples) / len(examples)
    out["top_sign"] = math.copysign(1, exact) == math.copysign(1, float(scores.scores[top]))

    start = time.perf_counter()
    result = evaluate(model, ["counterfact"], ["zero-shot", "pasta"], n=args.eval_n, heads=heads, alpha=ALPHA,
                      max_new_tokens=args.eval_tokens, progress=False)
    out["eval_s"] = time.perf_counter() - start
    out["eval"] = {method: {k: round(float(values[k]), 3) for k in ("n", "es", "ps", "fluency") if k in values}
                   for method, values in result.summary.get("tasks", {}).get("counterfact", {}).items()}
    out["peak_gib"] = peak_memory(device)
    del model
    return out


def _eval_line(ev: dict[str, dict[str, float]]) -> str:
    zero, pasta = ev.get("zero-shot", {}), ev.get("pasta", {})
    if "es" not in zero or "es" not in pasta:
        return f"CounterFact: {ev}"
    return f"CounterFact n={int(pasta.get('n', 0))} ES {zero['es']:.2f}->{pasta['es']:.2f} fp32"


def verdict(results: dict[str, dict[str, Any]], wall: float, device: str, budget: float) -> tuple[bool, str]:
    f32, b16 = results["fp32"], results["bf16"]
    problems = []
    if not f32["parity"] <= FP32_TOL:
        problems.append(f"fp32 parity {f32['parity']:.1e}")
    if not b16["parity"] <= BF16_TOL:
        problems.append(f"bf16 parity {b16['parity']:.2f}")
    for tag, r in results.items():
        if not r["effect"] > 0.01:
            problems.append(f"{tag} steering effect {r['effect']:.1e}")
        if not (r["attribution_finite"] and r["top_sign"]):
            problems.append(f"{tag} attribution")
        if set(r["eval"]) != {"zero-shot", "pasta"} or not all(m.get("n") for m in r["eval"].values()):
            problems.append(f"{tag} evaluation incomplete: {r['eval']}")
    if f32["cached_equal"] != f32["n_new"]:
        problems.append(f"fp32 cached != uncached from token {f32['cached_equal']}")
    if f32["engine"] == "hf" and not f32.get("fast_equal"):
        problems.append("fast engine text != hooks text")
    if b16["engine"] == "hf":
        problems.append("bf16 took the fast engine")
    if device.startswith("cuda") and wall > budget:
        problems.append(f"{wall:.0f} s over the {budget:.0f} s budget")
    summary = (f"device={device} | steer parity fp32 {f32['parity']:.1e} bf16 {b16['parity']:.2f} "
               f"(effect {f32['effect']:.2f}/{b16['effect']:.2f}) | cached==uncached fp32 "
               f"{f32['cached_equal']}/{f32['n_new']} bf16 {b16['cached_equal']}/{b16['n_new']} | engine fp32 "
               f"{'fast, same text' if f32.get('fast_equal') else f32['engine']}, bf16 {b16['engine']} "
               f"| attribution {f32['attribution_s']:.1f}/{b16['attribution_s']:.1f} s | eval "
               f"{f32['eval_s']:.1f}/{b16['eval_s']:.1f} s ({_eval_line(f32['eval'])}) | peak {f32['peak_gib']:.2f}/{b16['peak_gib']:.2f} GiB "
               f"| {wall:.0f} s")
    ok = not problems
    return ok, ("GPU CHECK PASS: " if ok else "GPU CHECK FAIL (" + "; ".join(problems) + "): ") + summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a load_model name or directory")
    parser.add_argument("--fast", action="store_true", help="tiny settings (CPU testing)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="GPU wall-time budget (default 300)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = parser.parse_args(argv)
    args.n_new, args.examples, args.eval_n, args.eval_tokens = (6, 2, 2, 4) if args.fast else (16, 4, 8, 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("GPU CHECK FAIL (torch sees no CUDA device; use --device cpu to run the checks on the CPU)")
        return 1
    start = time.perf_counter()
    results = {}
    try:
        for tag, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            results[tag] = dict(check_dtype(args.model, args.device, dtype, args), n_new=args.n_new)
            print(f"{tag}: {results[tag]}", flush=True)
    except Exception as err:  # noqa: BLE001 - the verdict line must say what broke
        print(f"GPU CHECK FAIL ({type(err).__name__}: {str(err)[:300]})")
        return 1
    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name()})"
    ok, line = verdict(results, time.perf_counter() - start, device, args.budget_s)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
