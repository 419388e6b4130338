"""Steered generation at plain Hugging Face speed: the bridge's own weights, HF's loop, PASTA as a mask bias.

The TransformerLens bridge wraps every module of the Hugging Face model it is built on; those wrappers are what
make hooks, caches and patching possible, and they cost ~25% of a decode step on SmolLM2-135M (the unsteered
bridge generates at 1.25x the plain HF model's wall time: ``results/steering_speed.md``). When a generation
needs none of that (no hook on the model but the steering itself), :func:`hf_generate_tokens` runs it on a
*twin*: a plain HF module tree built from the same config that **shares the bridge's parameter tensors** (no copy,
no change to the bridge: :func:`hf_twin`), driven by HF's own KV-cached ``generate``.

Steering on the twin is PASTA's additive form, the one the official code (pastalib) uses: a forward pre-hook on
each steered layer's attention module adds ``e(q) * log w[k]`` to that layer's attention mask for the steered
heads (``w`` = alpha on the scaled prompt keys, 1 elsewhere; ``e(q)`` the schedule's exponent for query row
``q``), and the softmax renormalises. ``softmax(s + log w) = A * w / sum(A * w)``, the ``hook_pattern`` edit of
:mod:`pasta_lens.kernels`, in exact arithmetic; in floating point the two agree to ~1e-6 in the logits and
give the same greedy tokens (``tests/test_hf_engine.py``). Unsteered heads and rows with ``e = 0`` get a bias of
exactly 0. The twin is built per call (~30 ms on SmolLM2: meta-device construction, then the bridge's tensors
are assigned) and dropped afterwards, so nothing is cached and nothing global changes.

:func:`pasta_lens.generate` picks this engine (``engine="auto"``) only where it gives the same result as the
bridge: a ``TransformerBridge`` in its default (unprocessed, non-compatibility) mode whose parameters keep the
HF names (Llama-family models such as SmolLM2 do; GPT-2's bridge renames them), every parameter on one device,
greedy decoding, and no hook of any kind on the model (so a user's ``with model.hooks(...)``, a cache or a patch
always sees the bridge run). :func:`hf_engine_unavailable` says which condition fails.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from pasta_lens.backends import backend_of
from pasta_lens.model_hooks import find_user_hook
from pasta_lens.schedule import Schedule, query_positions
from pasta_lens.spans import Emphasis
from pasta_lens.kernels import key_mask_of, key_weights
from pasta_lens.plan import ScalePosition, SteeringPlan, resolve_plan

WRAPPER = "._original_component"
"""How the bridge names a wrapped HF module's parameters: ``model.layers.0._original_component.self_attn...``;
dropping it gives the plain HF name."""


def _hf_name(bridge_name: str) -> str:
    return bridge_name.replace(WRAPPER, "")


def hf_engine_unavailable(model: Any, generate_kwargs: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """None when :func:`hf_generate_tokens` gives what the bridge's ``generate`` gives, else the reason it would
    not (one phrase): not a bridge, processed / compatibility-mode weights, parameters on several devices,
    non-greedy or unknown generation options, or any hook on the model."""
    if backend_of(model) != "bridge" or not isinstance(getattr(model, "original_model", None), nn.Module):
        return "the model is not a TransformerBridge over a Hugging Face model"
    if getattr(model, "compatibility_mode", True) or getattr(model, "_weights_processed", True):
        return "the bridge's weights are processed (compatibility mode): its forward differs from HF's"
    devices = {p.device for p in model.original_model.parameters()}
    if len(devices) != 1:
        return f"the parameters lie on {len(devices)} devices"
    extra = set(generate_kwargs or {}) - {"do_sample", "stop_at_eos"}
    if extra or (generate_kwargs or {}).get("do_sample", False):
        return "generation options beyond greedy decoding were given: " + ", ".join(sorted(extra) or ["do_sample"])
    hooked = find_user_hook(model)  # what a user hooked must fire, so the bridge runs
    if hooked:
        return f"{hooked} is registered (it must fire, so the bridge runs)"
    return None


def hf_twin(model: Any) -> tuple[nn.Module, dict[int, nn.Module]]:
    """A plain HF model sharing ``model.original_model``'s parameter tensors, and its attention module per layer.

    Built on the meta device from a copy of the config (no weight init, no memory), then each parameter and
    buffer is the bridge's own tensor (``load_state_dict(assign=True)``; tied weights re-tied). Nothing of the
    bridge changes; an in-place edit of a bridge weight is seen by the twin.

    Raises:
        ValueError: a twin parameter has no counterpart in the bridge (an architecture whose bridge renames its
            modules, e.g. GPT-2; :func:`pasta_lens.generate` then takes the hooks path).
    """
    from transformers.initialization import no_init_weights  # what from_pretrained itself uses

    hf = model.original_model
    config = copy.deepcopy(hf.config)
    config.output_attentions = config.output_hidden_states = False  # TransformerLens may have switched them on
    with torch.device("meta"), no_init_weights():
        twin = type(hf)(config)
    twin.load_state_dict({_hf_name(n): p for n, p in hf.named_parameters()}, strict=False, assign=True)
    twin.tie_weights()
    buffers = {_hf_name(n): b for n, b in hf.named_buffers()}
    for name, _ in list(twin.named_buffers()):
        if name in buffers:
            owner, _, leaf = name.rpartition(".")
            twin.get_submodule(owner)._buffers[leaf] = buffers[name]
    meta = [n for n, p in [*twin.named_parameters(), *twin.named_buffers()] if p.is_meta]
    if meta:  # e.g. GPT-2, whose bridge renames c_attn to qkv: the names no longer say which tensor is which
        raise ValueError(f"the bridge renames this architecture's modules, so a plain HF twin cannot find "
                         f"{meta[0]!r} (and {len(meta) - 1} more) among the bridge's parameters")
    twin.eval()
    names = {id(m): _hf_name(n) for n, m in hf.named_modules()}
    attention = {layer: twin.get_submodule(names[id(block.attn.original_component)])
                 for layer, block in enumerate(model.blocks)}
    return twin, attention


def prompt_log_weights(
    key_mask: Bool[Tensor, "batch prompt"],
    heads: list[int],
    alphas: list[float],
    n_heads: int,
    scale_position: ScalePosition = "exclude",
) -> Float[Tensor, "batch head 1 prompt"]:
    """``log w`` over the prompt keys for every head of a layer: ``log(alpha)`` on the steered heads' scaled keys,
    exactly 0 on the rest and on every unsteered head (keys after the prompt have ``w = 1``, so no term)."""
    alpha = torch.tensor(alphas, dtype=torch.float32, device=key_mask.device)
    out = torch.zeros(key_mask.shape[0], n_heads, 1, key_mask.shape[1], dtype=torch.float32, device=key_mask.device)
    out[:, heads] = key_weights(key_mask, key_mask.shape[1], alpha, scale_position).log()
    return out


def mask_bias(
    log_w: Float[Tensor, "batch head 1 prompt"],
    exponents: Float[Tensor, "query"],
    n_keys: int,
) -> Float[Tensor, "batch head query key"]:
    """PASTA as an additive attention-mask term: ``e(q) * log w[k]`` on the prompt keys, 0 on later keys.

    ``exponents`` are the schedule's for the mask's query rows (:meth:`Schedule.exponents` of positions
    ``K - Q .. K - 1``). Added to a layer's attention mask before the softmax, this is the ``hook_pattern`` edit.
    """
    bias = exponents.to(log_w.device)[None, None, :, None] * log_w
    return torch.nn.functional.pad(bias, (0, n_keys - log_w.shape[-1]))


def _steering_pre_hook(layer: int, key_mask: Tensor, heads: list[int], alphas: list[float], n_heads: int,
                       scale_position: ScalePosition, schedule: Schedule, n_keys_max: int):
    """A forward pre-hook for one layer's attention that adds the steered heads' term to its attention mask.

    The prompt term is built once per call (per device and dtype it meets), zero-padded to ``n_keys_max`` keys,
    so that under the every-step schedule a decode step costs one broadcast add of a slice (~8 us; the hook runs
    once per steered layer and step, so its cost is what steered / unsteered measures on this path).
    """
    built: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}  # (float32 log w, padded term)

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dtype == torch.bool or mask.ndim != 4:
            raise RuntimeError(f"Layer {layer}'s attention got no additive 4-D attention mask "
                               f"({None if mask is None else (mask.dtype, tuple(mask.shape))}); steer this model "
                               "with engine='hooks'.")
        n_queries, n_keys = mask.shape[-2], mask.shape[-1]
        log_w, term = built.get((mask.device, mask.dtype), (None, None))
        if term is None or term.shape[-1] < n_keys:
            log_w = prompt_log_weights(key_mask.to(mask.device), heads, alphas, n_heads, scale_position)
            term = torch.nn.functional.pad(log_w, (0, max(n_keys, n_keys_max) - log_w.shape[-1])).to(mask.dtype)
            built[(mask.device, mask.dtype)] = log_w, term
        if schedule.is_all:  # every row at e = 1: mask_bias is the padded prompt term itself (the hot path)
            return args, {**kwargs, "attention_mask": mask + term[..., :n_keys]}
        # Exponents on the CPU (a few numbers): no device sync to learn that a row is not steered.
        exponents = schedule.exponents(query_positions(n_queries, n_keys), key_mask.shape[1])
        if not bool(exponents.any()):
            return args, kwargs  # no steered row in this call (e.g. a decode step after "prompt")
        bias = mask_bias(log_w, exponents, n_keys)
        return args, {**kwargs, "attention_mask": mask + bias.to(mask.dtype)}

    return hook


def hf_generate_tokens(
    model: Any,
    emphasis: Emphasis,
    plan: Optional[SteeringPlan] = None,
    *,
    max_new_tokens: int = 40,
    stop_at_eos: bool = True,
    twin: Optional[tuple[nn.Module, dict[int, nn.Module]]] = None,
) -> Int[Tensor, "batch new"]:
    """Greedy, KV-cached generation after ``emphasis.tokens`` on the HF twin; the new tokens (EOS-padded rows).

    ``plan`` is what to steer (:func:`pasta_lens.plan.resolve_plan`: heads, per-head alphas, schedule, scaled
    side), exactly as :func:`pasta_lens.steer` would steer it; ``plan=None`` generates unsteered. ``stop_at_eos=False`` always
    generates ``max_new_tokens``. A row that ends early is padded after its EOS with the pad token, where
    TransformerLens may pad differently: :func:`pasta_lens.generation.decode_new` gives the same text for both.
    ``twin``: what :func:`hf_twin` returned, to reuse (default: built here, ~40 ms on SmolLM2).
    """
    from transformers import GenerationConfig

    hf, attention = twin or hf_twin(model)
    tok = model.tokenizer
    eos = tok.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=0 if stop_at_eos else max_new_tokens,
                              do_sample=False, use_cache=True, eos_token_id=eos, return_dict_in_generate=False,
                              output_attentions=False, output_hidden_states=False, output_scores=False,
                              pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos)
    with ExitStack() as stack, torch.inference_mode():
        if plan is not None:
            plan = resolve_plan(model, plan)  # a plan is taken as is; this only checks its heads fit the model
            key_mask = key_mask_of(emphasis)
            for layer, layer_heads, alphas in plan.layers():
                hook = _steering_pre_hook(layer, key_mask, layer_heads, alphas, model.cfg.n_heads,
                                          plan.scale_position, plan.schedule,
                                          emphasis.tokens.shape[1] + max_new_tokens)
                stack.callback(attention[layer].register_forward_pre_hook(hook, with_kwargs=True).remove)
        out = hf.generate(emphasis.tokens, attention_mask=emphasis.attention_mask, generation_config=config)
    return out[:, emphasis.tokens.shape[1]:]
