"""The PASTA arithmetic and the per-layer hook closures that apply it.

For a steered head with post-softmax attention ``A[q, k]`` and a key mask ``E`` (True = emphasised prompt
token), PASTA (Zhang et al., ICLR 2024, Eq. 2) rescales every query row:

    A'[q, k] = A[q, k] * w[k] / sum_j A[q, j] * w[j],   w[k] = alpha  if k is a prompt key outside E
                                                         w[k] = 1      otherwise (emphasised or generated keys)

which is exactly ``softmax(scores + log(w))``: the official implementation's additive ``log(alpha)`` on the
attention mask (:func:`key_bias`, used on ``hook_attn_scores``). With ``scale_position="include"`` the roles flip
(``w = alpha`` on the emphasised keys), which *suppresses* the span instead. A :class:`~pasta_lens.schedule.Schedule`
gives each query row an exponent ``e`` on alpha (``w ** e``; ``e = 0`` leaves the row bit-identical).

Keys are indexed by absolute position: position ``p < n_prompt`` is position ``p`` of the emphasised prompt, later
positions are continuation tokens (generated or teacher-forced) and keep weight 1. A pattern with ``K`` keys
usually holds positions ``0 .. K - 1``, with or without the KV cache. A sliding-window layer (Gemma 2/3's local
attention) run with a KV cache holds only the last keys: after ``N`` positions its decode step sees positions
``N - K .. N - 1``. Each layer's hook therefore follows the positions it has seen (:class:`KeyPositions`), so the
mask and the schedule's query rows line up with the cache's keys and steering is identical with and without the
KV cache on every layer. The arithmetic runs in fp32 and is cast back to the pattern's dtype. Every number (the
mask on the activation's device, alpha as a tensor) is made at call time from the activation itself, never cached
from an earlier call.

Cost: a hook that is the only one on its hook point, in a forward pass that builds no autograd graph, on an fp32
pattern, rescales the steered heads' slices in place (:func:`may_edit_in_place`); anywhere else it returns an
edited copy, so a reference held by anyone else never changes. Both paths give the same numbers, bit for bit.

This module knows nothing of head specs, profiles or precedence (:mod:`pasta_lens.plan` decides those) and adds
no hook to any model (:mod:`pasta_lens.steering` does, through TransformerLens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.plan import ScalePosition
from pasta_lens.schedule import Schedule, query_positions, scheduled_weights
from pasta_lens.spans import Emphasis

HookFn = Callable[[Tensor, Any], Tensor]
"""A TransformerLens forward hook: ``(activation, hook_point) -> activation``."""


def pattern_hook_name(layer: int) -> str:
    """The TransformerLens hook point steered for ``layer``."""
    return f"blocks.{layer}.attn.hook_pattern"


def scores_hook_name(layer: int) -> str:
    """The pre-softmax hook point used by the additive variant (``where="scores"``)."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def key_mask_of(emphasis: Emphasis | Tensor) -> Bool[Tensor, "batch pos"]:
    mask = emphasis.key_mask if isinstance(emphasis, Emphasis) else emphasis
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(
            "emphasis must be an Emphasis (from emphasize(...)) or a bool key mask "
            f"[batch, pos]; got {type(mask).__name__} "
            f"{getattr(mask, 'dtype', '')} {tuple(getattr(mask, 'shape', ()))}."
        )
    if not bool(mask.any()):
        raise ValueError("The key mask emphasises no token; mark a span with emphasize(model, '... *span* ...').")
    return mask


class KeyPositions:
    """Which absolute positions a layer's keys are, followed across the forward passes of one sequence.

    A hook sees ``[batch, head, Q, K]`` and no positions. A forward that holds all its keys (``Q == K``: no KV
    cache, or the prefill) covers positions ``0 .. K - 1`` and starts the count ``N = K``; a KV-cached step adds
    its ``Q`` new positions (``N += Q``) and its keys are the *last* ``K`` of them, ``N - K .. N - 1``. For a
    layer that caches every key that is ``0 .. K - 1`` again; for a sliding-window layer (Gemma 2/3 local
    attention: the cache keeps the last ``window - 1`` keys) it is the window. A cached step with no counted
    start (hooks added after the prefill) is taken to hold every earlier key.

    One instance per layer hook; it holds one integer.

    Example:
        >>> where = KeyPositions()
        >>> where.locate(58, 58), where.locate(1, 8), where.locate(1, 8)   # prefill, two windowed decode steps
        (0, 51, 52)
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: int | None = None

    def locate(self, n_queries: int, n_keys: int) -> int:
        """The absolute position of key 0 of this forward's pattern (0 unless a cache dropped earlier keys)."""
        if n_keys == n_queries or self.seen is None:
            self.seen = n_keys
        else:
            self.seen = max(self.seen + n_queries, n_keys)
        return self.seen - n_keys


def key_weights(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    alpha: Float[Tensor, " head"],
    scale_position: ScalePosition = "exclude",
    first_key: int = 0,
) -> Float[Tensor, "batch head 1 key"]:
    """The multiplicative weight of every key for each steered head (1 = untouched).

    The keys are absolute positions ``first_key .. first_key + n_keys - 1`` (``first_key > 0`` only for a
    sliding-window cache: :class:`KeyPositions`). Prompt positions (below ``key_mask.shape[1]``) get ``alpha``
    outside the span ("exclude") or inside it ("include"); later positions (generated tokens) keep weight 1.
    """
    batch, n_prompt = key_mask.shape
    n_positions = first_key + n_keys
    if n_positions < n_prompt:
        raise ValueError(
            f"The attention pattern reaches position {n_positions} ({n_keys} keys) but the emphasis "
            f"covers {n_prompt} prompt positions: run the model on emphasis.tokens (or a continuation "
            "of them). For KV-cached generation on a model with sliding-window attention (Gemma 2/3 "
            "local layers keep only the window's keys), add the steering hooks before the prefill "
            "(steer(...) around the whole generate), or generate with use_past_kv_cache=False."
        )
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    w = torch.ones(batch, alpha.shape[0], 1, n_positions, dtype=torch.float32, device=key_mask.device)
    prompt = torch.where(rearrange(scaled, "batch key -> batch 1 1 key"), rearrange(alpha, "head -> 1 head 1 1"), 1.0)
    w[..., :n_prompt] = prompt
    return w[..., first_key:]


def rescale_rows(
    pattern: Float[Tensor, "batch head query key"],
    weights: Float[Tensor, "batch head 1 key"],
) -> Float[Tensor, "batch head query key"]:
    """``A * w / sum(A * w)`` per row, in fp32, cast back to the pattern's dtype."""
    scaled = pattern.float() * weights
    scaled = scaled / scaled.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return scaled.to(pattern.dtype)


def scheduled_rescale(
    pattern: Float[Tensor, "batch head query key"],
    weights: Float[Tensor, "batch head 1 key"],
    schedule: Schedule,
    n_prompt: int,
    n_positions: int | None = None,
) -> Float[Tensor, "batch head query key"]:
    """:func:`rescale_rows` under a schedule: rows with exponent 0 are returned untouched (bit-identical).

    ``pattern`` holds the steered heads only; its query rows are absolute positions ``N - Q .. N - 1``, where
    ``N = n_positions`` is the number of positions up to and including this forward's (default: ``K``, the
    pattern's keys; more for a sliding-window cache, :class:`KeyPositions`).
    """
    if schedule.is_all:
        return rescale_rows(pattern, weights)
    n_positions = pattern.shape[-1] if n_positions is None else n_positions
    positions = query_positions(pattern.shape[-2], n_positions, device=pattern.device)
    exponents = schedule.exponents(positions, n_prompt)
    active = exponents > 0
    if not bool(active.any()):
        return pattern
    steered = rescale_rows(pattern, scheduled_weights(weights, exponents))
    return torch.where(active[None, None, :, None], steered, pattern)


def layer_mask(layer: int, heads: list[int], act: Tensor, key_mask: Tensor) -> Tensor:
    """The key mask on ``act``'s device (at call time, never cached), after checking heads and batch against it."""
    batch, n_heads = act.shape[0], act.shape[1]
    if max(heads) >= n_heads:
        raise ValueError(f"Layer {layer} has {n_heads} heads; cannot steer head {max(heads)}.")
    mask = key_mask.to(act.device)
    if mask.shape[0] not in (1, batch):
        raise ValueError(
            f"The key mask has {mask.shape[0]} rows but the batch has {batch}: build the "
            "emphasis from the same prompts you run (or one row to broadcast)."
        )
    return mask


def may_edit_in_place(act: Tensor, hook: Any) -> bool:
    """Whether a hook may overwrite ``act`` in place instead of returning an edited copy.

    Only when nobody else can see the difference: no autograd graph records ``act`` (a gradient through the
    pattern, e.g. attribution profiling, needs the softmax output unchanged), ``act`` is fp32 (the edit's own
    arithmetic dtype, so both paths compute the same numbers), and this hook is the only forward hook on its
    hook point, so no cache or user hook holds a reference to the unedited tensor (``run_with_cache`` adds its
    own hook, which turns this off). The in-place path saves the copy of the layer's whole pattern that
    ``index_copy`` makes, which is what costs on long prompts.
    """
    hooks = getattr(hook, "fwd_hooks", None)
    return (
        act.dtype == torch.float32
        and not (act.requires_grad and torch.is_grad_enabled())
        and hooks is not None
        and len(hooks) == 1
    )


def active_rows(
    schedule: Schedule, n_queries: int, n_positions: int, n_prompt: int, device: torch.device
) -> tuple[int, int] | None:
    """The steered query rows ``[lo, hi)`` when the schedule steers a contiguous block of rows at full strength
    (``all``, ``prompt``, ``first:N``), else None (``decay:G``: per-row strengths, edited out of place).

    The rows are positions ``n_positions - n_queries .. n_positions - 1``."""
    if schedule.is_all:
        return 0, n_queries
    exponents = schedule.exponents(query_positions(n_queries, n_positions, device=device), n_prompt)
    if not bool(((exponents == 0) | (exponents == 1)).all()):
        return None
    rows = torch.nonzero(exponents).flatten().tolist()
    if not rows:
        return 0, 0
    lo, hi = rows[0], rows[-1] + 1
    return (lo, hi) if hi - lo == len(rows) else None


def rescale_rows_(
    pattern: Float[Tensor, "batch head query key"],
    heads: list[int],
    weights: Float[Tensor, "batch steered 1 key"],
    rows: tuple[int, int],
) -> None:
    """In place: :func:`rescale_rows` on each of ``heads``' query rows ``rows`` of an fp32 pattern (same
    arithmetic, so the same numbers); nothing else of ``pattern`` is touched."""
    lo, hi = rows
    for i, head in enumerate(heads):
        block = pattern[:, head, lo:hi]
        block.mul_(weights[:, i])
        block.div_(block.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny))


def pattern_layer_hook(
    layer: int,
    heads: list[int],
    alphas: list[float],
    key_mask: Tensor,
    scale_position: ScalePosition,
    schedule: Schedule = Schedule(),
) -> HookFn:
    """The ``hook_pattern`` hook of one layer: rescale ``heads``' rows (each at its alpha) under ``schedule``.

    The hook follows its layer's key positions across the forwards of a generation (:class:`KeyPositions`), so a
    sliding-window KV cache is steered on the right keys and rows."""
    where = KeyPositions()

    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        mask = layer_mask(layer, heads, pattern, key_mask)
        n_queries, n_keys = pattern.shape[-2], pattern.shape[-1]
        first_key = where.locate(n_queries, n_keys)
        # Built from the activation's own device at call time (never cached): safe across devices.
        alpha = torch.tensor(alphas, dtype=torch.float32, device=pattern.device)
        weights = key_weights(mask, n_keys, alpha, scale_position, first_key)
        if may_edit_in_place(pattern, hook):
            rows = active_rows(schedule, n_queries, first_key + n_keys, mask.shape[1], pattern.device)
            if rows is not None:
                rescale_rows_(pattern, heads, weights, rows)
                return pattern
        idx = torch.tensor(heads, device=pattern.device)
        steered = scheduled_rescale(pattern.index_select(1, idx), weights, schedule, mask.shape[1], first_key + n_keys)
        # Out of place when anyone else could see the difference: a cached or user-held reference to the
        # unsteered pattern stays unsteered, and autograd (gradient attribution) differentiates through the edit.
        return pattern.index_copy(1, idx, steered)

    return hook


def key_bias(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    n_heads: int,
    heads: list[int],
    log_alpha: Float[Tensor, " steered"],
    scale_position: ScalePosition = "exclude",
    first_key: int = 0,
) -> Float[Tensor, "batch head 1 key"]:
    """``log(w)`` of :func:`key_weights` for *all* ``n_heads`` heads of a layer: 0 for unsteered heads.

    Adding it to the pre-softmax scores is PASTA: ``softmax(s + log w) = A * w / sum(A * w)``. Zeros leave the
    unsteered heads bit-identical (``x + 0.0 == x``, also for masked ``-inf`` scores). The keys are positions
    ``first_key .. first_key + n_keys - 1``, as in :func:`key_weights`.
    """
    batch, n_prompt = key_mask.shape
    n_positions = first_key + n_keys
    if n_positions < n_prompt:
        raise ValueError(
            f"The attention scores reach position {n_positions} ({n_keys} keys) but the emphasis "
            f"covers {n_prompt} prompt positions: run the model on emphasis.tokens (or a continuation "
            "of them). For KV-cached generation on a model with sliding-window attention, add the "
            "steering hooks before the prefill, or generate with use_past_kv_cache=False."
        )
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    per_head = torch.zeros(n_heads, dtype=torch.float32, device=key_mask.device)
    per_head[torch.tensor(heads, device=key_mask.device)] = log_alpha
    bias = torch.zeros(batch, n_heads, 1, n_positions, dtype=torch.float32, device=key_mask.device)
    bias[..., :n_prompt] = scaled[:, None, None, :] * per_head[None, :, None, None]
    return bias[..., first_key:]


def scores_layer_hook(
    layer: int, heads: list[int], alphas: list[float], key_mask: Tensor, scale_position: ScalePosition
) -> HookFn:
    """The ``hook_attn_scores`` hook of one layer: add ``log(alpha)`` to ``heads``' scaled keys (every row), on
    the keys' absolute positions (:class:`KeyPositions`)."""
    where = KeyPositions()

    def hook(scores: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        mask = layer_mask(layer, heads, scores, key_mask)
        n_heads = scores.shape[1]
        first_key = where.locate(scores.shape[-2], scores.shape[-1])
        log_alpha = torch.tensor(alphas, dtype=torch.float32, device=scores.device).log()
        bias = key_bias(mask, scores.shape[-1], n_heads, heads, log_alpha, scale_position, first_key)
        if may_edit_in_place(scores, hook):  # only the steered heads' slices, the same additions
            for head in heads:
                scores[:, head].add_(bias[:, head])
            return scores
        # One broadcast addition, out of place (a cached reference to the unsteered scores stays unsteered;
        # autograd works): no [steered, query, key] intermediates and no renormalisation pass.
        return scores + bias.to(scores.dtype)

    return hook
