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

:func:`pasta_lens.generate` picks this engine (``engine="auto"``) only where its tokens are the bridge's: a
``TransformerBridge`` in its default (unprocessed, non-compatibility) mode, every parameter on one device, greedy
decoding, no hook of any kind on the model (a TransformerLens hook, a PyTorch forward / pre / backward / backward-pre
hook that is not the libraries' own wiring, a process-wide module hook), every module running stock code (no
``forward`` assigned on an instance or a class, no module of another class than the HF model builds there) and
every tensor matched both ways (a strict load: a parameter or buffer added to or renamed on the bridge refuses the
twin, so GPT-2, whose bridge splits ``c_attn``, takes the hooks path). :mod:`pasta_lens.twin` builds
the twin and checks every condition (:func:`hf_engine_unavailable`, :func:`hf_twin`, re-exported here);
``docs/engines.md`` lists them with the tests that prove each.

Both engines mean the same by ``stop_at_eos=False`` (EOS is an ordinary token that greedy decoding may pick and
continue after) and place the keys of a sliding-window layer's KV cache (Gemma 2/3 local attention) at their
absolute positions (:class:`pasta_lens.kernels.KeyPositions`), so steering there is that of an uncached run.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from pasta_lens.kernels import KeyPositions, key_mask_of, key_weights
from pasta_lens.plan import ScalePosition, SteeringPlan, resolve_plan
from pasta_lens.schedule import Schedule, query_positions
from pasta_lens.spans import Emphasis
from pasta_lens.twin import hf_engine_unavailable, hf_twin

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "hf_engine_unavailable",
    "hf_generate_tokens",
    "hf_twin",
    "mask_bias",
    "prompt_log_weights",
    "steering_pre_hook",
]


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
    exponents: Float[Tensor, " query"],
    n_keys: int,
    first_key: int = 0,
) -> Float[Tensor, "batch head query key"]:
    """PASTA as an additive attention-mask term: ``e(q) * log w[k]`` on the prompt keys, 0 on later keys.

    The mask's keys are positions ``first_key .. first_key + n_keys - 1`` (``first_key > 0`` only for a
    sliding-window cache: :class:`pasta_lens.kernels.KeyPositions`); ``exponents`` are the schedule's for its
    query rows (:meth:`Schedule.exponents` of positions ``N - Q .. N - 1``, ``N = first_key + n_keys``). Added to a
    layer's attention mask before the softmax, this is the ``hook_pattern`` edit.
    """
    bias = exponents.to(log_w.device)[None, None, :, None] * log_w
    bias = torch.nn.functional.pad(bias, (0, max(0, first_key + n_keys - log_w.shape[-1])))
    return bias[..., first_key : first_key + n_keys]


def steering_pre_hook(
    layer: int,
    key_mask: Tensor,
    heads: list[int],
    alphas: list[float],
    n_heads: int,
    scale_position: ScalePosition,
    schedule: Schedule,
    n_keys_max: int,
):
    """A forward pre-hook for one layer's attention that adds the steered heads' term to its attention mask.

    The keys' absolute positions come from the mask's shape, followed across the generation's forwards by
    :class:`~pasta_lens.kernels.KeyPositions`, the rule the ``hook_pattern`` hooks use: a sliding-window layer's
    decode mask covers only the window. The prompt term is built once per call (per device and dtype it meets),
    zero-padded to ``n_keys_max`` positions, so that under the every-step schedule a decode step costs one
    broadcast add of a slice (~8 us; the hook runs once per steered layer and step, so its cost is what steered /
    unsteered measures on this path).
    """
    built: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}  # (float32 log w, padded term)
    where = KeyPositions()
    n_prompt = key_mask.shape[1]

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dtype == torch.bool or mask.ndim != 4:
            raise RuntimeError(
                f"Layer {layer}'s attention got no additive 4-D attention mask "
                f"({None if mask is None else (mask.dtype, tuple(mask.shape))}); steer this model "
                "with engine='hooks'."
            )
        n_queries, n_keys = mask.shape[-2], mask.shape[-1]
        first_key = where.locate(n_queries, n_keys)
        n_positions = first_key + n_keys
        if n_positions < n_prompt:
            raise RuntimeError(
                f"Layer {layer}'s attention mask reaches position {n_positions}, before the end of "
                f"the {n_prompt}-token prompt; steer this model with engine='hooks'."
            )
        cached = built.get((mask.device, mask.dtype))
        if cached is None or cached[1].shape[-1] < n_positions:
            log_w = prompt_log_weights(key_mask.to(mask.device), heads, alphas, n_heads, scale_position)
            term = torch.nn.functional.pad(log_w, (0, max(n_positions, n_keys_max) - log_w.shape[-1])).to(mask.dtype)
            built[(mask.device, mask.dtype)] = log_w, term
        else:
            log_w, term = cached
        if schedule.is_all:  # every row at e = 1: mask_bias is the padded prompt term itself (the hot path)
            if first_key >= n_prompt:
                return args, kwargs  # a window past the prompt: no prompt key left to scale
            return args, {**kwargs, "attention_mask": mask + term[..., first_key:n_positions]}
        # Exponents on the CPU (a few numbers): no device sync to learn that a row is not steered.
        exponents = schedule.exponents(query_positions(n_queries, n_positions), n_prompt)
        if not bool(exponents.any()) or first_key >= n_prompt:
            return args, kwargs  # no steered row or no prompt key in this call (e.g. a decode step after "prompt")
        bias = mask_bias(log_w, exponents, n_keys, first_key)
        return args, {**kwargs, "attention_mask": mask + bias.to(mask.dtype)}

    return hook


def hf_generate_tokens(
    model: Any,
    emphasis: Emphasis,
    plan: SteeringPlan | None = None,
    *,
    max_new_tokens: int = 40,
    stop_at_eos: bool = True,
    twin: tuple[PreTrainedModel, dict[int, nn.Module]] | None = None,
) -> Int[Tensor, "batch new"]:
    """Greedy, KV-cached generation after ``emphasis.tokens`` on the HF twin; the new tokens (EOS-padded rows).

    ``plan`` is what to steer (:func:`pasta_lens.plan.resolve_plan`: heads, per-head alphas, schedule, scaled
    side), exactly as :func:`pasta_lens.steer` would steer it; ``plan=None`` generates unsteered.

    ``stop_at_eos`` means what it means in TransformerLens' ``generate``: True stops a row at its first EOS (and
    pads it after); False generates ``max_new_tokens`` for every row with EOS an ordinary token, which greedy
    decoding may pick and then continue after. (HF's ``min_new_tokens`` would instead forbid EOS and change the
    text.) A row that ends early is padded after its EOS with the pad token, where TransformerLens may pad
    differently: :func:`pasta_lens.generation.decode_new` gives the same text for both. ``twin``: what
    :func:`hf_twin` returned, to reuse (default: built here, ~40 ms on SmolLM2).
    """
    from transformers import GenerationConfig, GenerationMixin

    hf, attention = twin or hf_twin(model)
    if not isinstance(hf, GenerationMixin):  # every *ForCausalLM class is one
        raise ValueError(f"The HF twin ({type(hf).__name__}) cannot generate; use engine='hooks'.")
    tok = model.tokenizer
    eos = tok.eos_token_id
    # The twin's own generation config is replaced: HF fills every unset option from it (an eos_token_id left
    # None would come back from there), and nothing but these options may shape the loop.
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        eos_token_id=eos if stop_at_eos else None,
        return_dict_in_generate=False,
        output_attentions=False,
        output_hidden_states=False,
        output_scores=False,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos,
    )
    hf.generation_config = config
    with ExitStack() as stack, torch.inference_mode():
        if plan is not None:
            plan = resolve_plan(model, plan)  # a plan is taken as is; this only checks its heads fit the model
            key_mask = key_mask_of(emphasis)
            for layer, layer_heads, alphas in plan.layers():
                hook = steering_pre_hook(
                    layer,
                    key_mask,
                    layer_heads,
                    alphas,
                    model.cfg.n_heads,
                    plan.scale_position,
                    plan.schedule,
                    emphasis.tokens.shape[1] + max_new_tokens,
                )
                stack.callback(attention[layer].register_forward_pre_hook(hook, with_kwargs=True).remove)
        out = hf.generate(  # type: ignore[misc]  # transformers' self-type Protocol (written for ty) rejects its models
            emphasis.tokens, attention_mask=emphasis.attention_mask, generation_config=config
        )
    return out[:, emphasis.tokens.shape[1] :]
