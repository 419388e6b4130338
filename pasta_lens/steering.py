"""PASTA steering as TransformerLens hook functions on ``blocks.{L}.attn.hook_pattern``.

For a steered head with post-softmax attention ``A[q, k]`` and a key mask ``E`` (True = emphasised prompt
token), PASTA (Zhang et al., ICLR 2024, Eq. 2) rescales every query row:

    A'[q, k] = A[q, k] * w[k] / sum_j A[q, j] * w[j],   w[k] = alpha  if k is a prompt key outside E
                                                         w[k] = 1      otherwise (emphasised or generated keys)

which is exactly ``softmax(scores + log(w))``: the official implementation's additive ``log(alpha)`` on the
attention mask. With ``scale_position="include"`` the roles flip (``w = alpha`` on the emphasised keys), which
*suppresses* the span instead.

Properties the tests pin down: alpha = 1 is a no-op; rows still sum to 1; heads that are not listed are
bit-identical to the unsteered run; padding keys (attention 0) stay 0; keys generated after the prompt are never
rescaled, so steering is identical with and without the KV cache; the arithmetic runs in fp32 and is cast back
to the pattern's dtype; for grouped-query attention the head index is the *query* head.

Nothing here touches the model: :func:`pasta_hooks` returns ``(hook_name, hook_fn)`` pairs for
``model.run_with_hooks`` / ``model.hooks``, and :func:`steer` is a thin context manager over ``model.hooks``,
which removes exactly the hooks it added (the user's own hooks stay) even when the body raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.spans import Emphasis

Head = tuple[int, int]
"""A ``(layer, query_head)`` pair."""

HeadSpec = Union[Mapping[int, Iterable[int]], Iterable[Head], Any]
"""Heads to steer: ``{layer: [heads]}``, ``[(layer, head), ...]``, or an object with a ``heads`` attribute
holding such pairs (a :class:`pasta_lens.profiling.HeadProfile`)."""

AlphaSpec = Union[float, Mapping[Head, float]]
"""One alpha for every head, or a mapping ``(layer, head) -> alpha`` that covers every steered head."""

ScalePosition = Literal["exclude", "include"]
Where = Literal["pattern", "scores"]
"""Where the edit is made: ``"pattern"`` rescales ``hook_pattern`` (default); ``"scores"`` adds ``log(alpha)``
on ``hook_attn_scores`` before the softmax (same result, cheaper on long prompts)."""
HookFn = Callable[[Tensor, Any], Tensor]


def pattern_hook_name(layer: int) -> str:
    """The TransformerLens hook point steered for ``layer``."""
    return f"blocks.{layer}.attn.hook_pattern"


def normalize_heads(heads: HeadSpec) -> tuple[Head, ...]:
    """Turn any accepted head specification into sorted, unique ``(layer, head)`` pairs.

    Raises:
        ValueError: the set is empty, or an entry is not a pair of non-negative integers.

    Example:
        >>> normalize_heads({21: [5], 20: [3, 0]})
        ((20, 0), (20, 3), (21, 5))
    """
    if hasattr(heads, "heads") and not isinstance(heads, Mapping):
        heads = heads.heads
    if isinstance(heads, Mapping):
        pairs = [(layer, head) for layer, hs in heads.items() for head in hs]
    else:
        pairs = list(heads)
    out = set()
    for pair in pairs:
        try:
            layer, head = pair
            layer, head = _as_index(layer), _as_index(head)
        except (TypeError, ValueError):
            raise ValueError(f"Each steered head must be a (layer, head) pair of non-negative integers; got "
                             f"{pair!r}. Use {{20: [0, 3]}} or [(20, 0), (20, 3)].") from None
        out.add((layer, head))
    if not out:
        raise ValueError("The head set is empty: name at least one (layer, head) to steer, "
                         "e.g. {20: [0, 3]}, or load a profile with load_profile(...).")
    return tuple(sorted(out))


def _as_index(x: Any) -> int:
    if isinstance(x, bool) or int(x) != x or int(x) < 0:
        raise ValueError(x)
    return int(x)


def validate_heads(heads: tuple[Head, ...], n_layers: int, n_heads: int) -> None:
    """Raise ``ValueError`` naming the valid range if a head lies outside an ``n_layers x n_heads`` model."""
    for layer, head in heads:
        if layer >= n_layers or head >= n_heads:
            raise ValueError(f"Head ({layer}, {head}) is out of range for a model with {n_layers} layers and "
                             f"{n_heads} query heads: use layers 0..{n_layers - 1} and heads 0..{n_heads - 1}.")


def _alphas(heads: tuple[Head, ...], alpha: AlphaSpec) -> dict[Head, float]:
    if isinstance(alpha, Mapping):
        given = {(int(k[0]), int(k[1])): float(v) for k, v in alpha.items()}
        missing, extra = set(heads) - set(given), set(given) - set(heads)
        if missing or extra:
            raise ValueError(f"A per-head alpha mapping must cover exactly the steered heads; missing "
                             f"{sorted(missing)}, not steered {sorted(extra)}.")
    else:
        given = {h: float(alpha) for h in heads}
    for head, a in given.items():
        if not (0.0 < a <= 1.0) or math.isnan(a):
            raise ValueError(f"alpha must be in (0, 1] (1 = no steering, smaller = stronger); got {a} "
                             f"for head {head}.")
    return given


def _key_mask(emphasis: Union[Emphasis, Tensor]) -> Bool[Tensor, "batch pos"]:
    mask = emphasis.key_mask if isinstance(emphasis, Emphasis) else emphasis
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError("emphasis must be an Emphasis (from emphasize(...)) or a bool key mask "
                         f"[batch, pos]; got {type(mask).__name__} "
                         f"{getattr(mask, 'dtype', '')} {tuple(getattr(mask, 'shape', ()))}.")
    if not bool(mask.any()):
        raise ValueError("The key mask emphasises no token; mark a span with emphasize(model, '... *span* ...').")
    return mask


def key_weights(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    alpha: Float[Tensor, "head"],
    scale_position: ScalePosition = "exclude",
) -> Float[Tensor, "batch head 1 key"]:
    """The multiplicative weight of every key for each steered head (1 = untouched).

    Prompt keys (the first ``key_mask.shape[1]`` positions) get ``alpha`` outside the span ("exclude") or
    inside it ("include"); keys beyond the prompt (generated tokens) keep weight 1.
    """
    batch, n_prompt = key_mask.shape
    if n_keys < n_prompt:
        raise ValueError(f"The attention pattern has {n_keys} keys but the emphasis covers {n_prompt} prompt "
                         "positions: run the model on emphasis.tokens (or a continuation of them).")
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    w = torch.ones(batch, alpha.shape[0], 1, n_keys, dtype=torch.float32, device=key_mask.device)
    prompt = torch.where(scaled[:, None, None, :], alpha[None, :, None, None], 1.0)
    w[..., :n_prompt] = prompt
    return w


def rescale_rows(
    pattern: Float[Tensor, "batch head query key"],
    weights: Float[Tensor, "batch head 1 key"],
) -> Float[Tensor, "batch head query key"]:
    """``A * w / sum(A * w)`` per row, in fp32, cast back to the pattern's dtype."""
    scaled = pattern.float() * weights
    scaled = scaled / scaled.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return scaled.to(pattern.dtype)


def _layer_hook(layer: int, heads: list[int], alphas: list[float], key_mask: Tensor,
                scale_position: ScalePosition) -> HookFn:
    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        batch, n_heads = pattern.shape[0], pattern.shape[1]
        if max(heads) >= n_heads:
            raise ValueError(f"Layer {layer} has {n_heads} heads; cannot steer head {max(heads)}.")
        mask = key_mask.to(pattern.device)
        if mask.shape[0] not in (1, batch):
            raise ValueError(f"The key mask has {mask.shape[0]} rows but the batch has {batch}: build the "
                             "emphasis from the same prompts you run (or one row to broadcast).")
        # Built from the activation's own device at call time (never cached): safe across devices.
        idx = torch.tensor(heads, device=pattern.device)
        alpha = torch.tensor(alphas, dtype=torch.float32, device=pattern.device)
        weights = key_weights(mask, pattern.shape[-1], alpha, scale_position)
        steered = rescale_rows(pattern.index_select(1, idx), weights)
        # Out of place: a cached or user-held reference to the unsteered pattern stays unsteered,
        # and autograd (gradient attribution) can differentiate through the edit.
        return pattern.index_copy(1, idx, steered)

    return hook


def pasta_hooks(
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: AlphaSpec = 0.01,
    scale_position: ScalePosition = "exclude",
    where: Where = "pattern",
) -> list[tuple[str, HookFn]]:
    """TransformerLens forward hooks that apply PASTA to ``heads``, one hook per steered layer.

    Args:
        heads: ``{layer: [heads]}``, ``[(layer, head), ...]`` or a ``HeadProfile``.
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, pos]`` over the prompt
            (True = emphasised). One row broadcasts over any batch.
        alpha: the factor on non-emphasised prompt keys, in (0, 1]; or a per-head mapping.
        scale_position: ``"exclude"`` (default, the paper's: scale keys outside the span) or ``"include"``
            (scale the span's keys: suppress it).
        where: ``"pattern"`` (default) rescales and renormalises ``hook_pattern``; ``"scores"`` adds
            ``log(alpha)`` to the same keys on ``hook_attn_scores``, and the model's own softmax renormalises:
            the same steering (to float rounding) at the cost of one addition per score, which matters on long
            prompts (see :func:`scores_hooks`).

    Returns:
        ``[(f"blocks.{L}.attn.hook_pattern", hook_fn), ...]`` (or ``hook_attn_scores``), sorted by layer.

    Example:
        >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({20: [0, 3]}, em))
    """
    if scale_position not in ("exclude", "include"):
        raise ValueError(f"scale_position must be 'exclude' or 'include'; got {scale_position!r}.")
    if where == "scores":
        return scores_hooks(heads, emphasis, alpha, scale_position)
    if where != "pattern":
        raise ValueError(f"where must be 'pattern' (edit hook_pattern) or 'scores' (edit hook_attn_scores); "
                         f"got {where!r}.")
    pairs = normalize_heads(heads)
    alphas = _alphas(pairs, alpha)
    key_mask = _key_mask(emphasis)
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)
    return [(pattern_hook_name(layer),
             _layer_hook(layer, hs, [alphas[(layer, h)] for h in hs], key_mask, scale_position))
            for layer, hs in sorted(by_layer.items())]


@contextmanager
def steer(
    model: Any,
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: AlphaSpec = 0.01,
    scale_position: ScalePosition = "exclude",
    *,
    allow_transfer: bool = False,
    where: Where = "pattern",
) -> Iterator[Any]:
    """Steer ``model`` inside a ``with`` block; a thin wrapper over ``model.hooks(fwd_hooks=...)``.

    The heads are checked against ``model.cfg`` (and a ``HeadProfile`` against the model's shape and weights,
    unless ``allow_transfer=True``, e.g. a LLaMA profile used on Vicuna) before any hook is added. On exit,
    normal or by exception, exactly the hooks added here are removed. ``where`` is as in :func:`pasta_hooks`.

    Example:
        >>> with steer(model, {20: [0, 3]}, em):
        ...     out = model.generate(em.tokens, max_new_tokens=40, do_sample=False, prepend_bos=False)
    """
    validate_for = getattr(heads, "validate_for", None)
    if callable(validate_for):
        validate_for(model, allow_transfer=allow_transfer)
    pairs = normalize_heads(heads)
    validate_heads(pairs, model.cfg.n_layers, model.cfg.n_heads)
    hooks = pasta_hooks(pairs, emphasis, alpha, scale_position, where=where)
    with model.hooks(fwd_hooks=hooks):
        yield model


# --- the additive variant on hook_attn_scores --------------------------------------------------------------

def scores_hook_name(layer: int) -> str:
    """The pre-softmax hook point used by the additive variant (``where="scores"``)."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def key_bias(
    key_mask: Bool[Tensor, "batch prompt"],
    n_keys: int,
    n_heads: int,
    heads: list[int],
    log_alpha: Float[Tensor, "steered"],
    scale_position: ScalePosition = "exclude",
) -> Float[Tensor, "batch head 1 key"]:
    """``log(w)`` of :func:`key_weights` for *all* ``n_heads`` heads of a layer: 0 for unsteered heads.

    Adding it to the pre-softmax scores is PASTA: ``softmax(s + log w) = A * w / sum(A * w)``. Zeros leave the
    unsteered heads bit-identical (``x + 0.0 == x``, also for masked ``-inf`` scores).
    """
    batch, n_prompt = key_mask.shape
    if n_keys < n_prompt:
        raise ValueError(f"The attention scores have {n_keys} keys but the emphasis covers {n_prompt} prompt "
                         "positions: run the model on emphasis.tokens (or a continuation of them).")
    scaled = ~key_mask if scale_position == "exclude" else key_mask
    per_head = torch.zeros(n_heads, dtype=torch.float32, device=key_mask.device)
    per_head[torch.tensor(heads, device=key_mask.device)] = log_alpha
    bias = torch.zeros(batch, n_heads, 1, n_keys, dtype=torch.float32, device=key_mask.device)
    bias[..., :n_prompt] = scaled[:, None, None, :] * per_head[None, :, None, None]
    return bias


def _scores_layer_hook(layer: int, heads: list[int], alphas: list[float], key_mask: Tensor,
                       scale_position: ScalePosition) -> HookFn:
    def hook(scores: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        batch, n_heads = scores.shape[0], scores.shape[1]
        if max(heads) >= n_heads:
            raise ValueError(f"Layer {layer} has {n_heads} heads; cannot steer head {max(heads)}.")
        mask = key_mask.to(scores.device)
        if mask.shape[0] not in (1, batch):
            raise ValueError(f"The key mask has {mask.shape[0]} rows but the batch has {batch}: build the "
                             "emphasis from the same prompts you run (or one row to broadcast).")
        log_alpha = torch.tensor(alphas, dtype=torch.float32, device=scores.device).log()
        bias = key_bias(mask, scores.shape[-1], n_heads, heads, log_alpha, scale_position)
        # One broadcast addition, out of place (a cached reference to the unsteered scores stays unsteered;
        # autograd works): no [steered, query, key] intermediates and no renormalisation pass.
        return scores + bias.to(scores.dtype)

    return hook


def scores_hooks(
    heads: HeadSpec,
    emphasis: Union[Emphasis, Bool[Tensor, "batch pos"]],
    alpha: AlphaSpec = 0.01,
    scale_position: ScalePosition = "exclude",
) -> list[tuple[str, HookFn]]:
    """PASTA as an additive ``log(alpha)`` on ``blocks.{L}.attn.hook_attn_scores``: ``where="scores"``.

    The official code's form: the steered heads' pre-softmax scores of the scaled prompt keys get ``log(alpha)``
    and the model's softmax renormalises. Same arguments and checks as :func:`pasta_hooks`; the result equals
    the ``hook_pattern`` variant to float rounding (tests/test_steering_scores.py). The difference is cost: the
    pattern edit gathers the steered heads, rescales, sums and divides every row and scatters back (several
    passes over ``[batch, steered, query, key]``), the additive edit is one broadcast addition over the layer's
    scores, which is what counts for long prompts (prefill cost grows with T x T x heads).

    What you see differs: with this variant every hook on (and cache of) ``hook_pattern`` shows the steered
    pattern, while hooks of yours on ``hook_attn_scores`` see unsteered or steered scores depending on order.

    Example:
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=scores_hooks({20: [0, 3]}, em))
    """
    if scale_position not in ("exclude", "include"):
        raise ValueError(f"scale_position must be 'exclude' or 'include'; got {scale_position!r}.")
    pairs = normalize_heads(heads)
    alphas = _alphas(pairs, alpha)
    key_mask = _key_mask(emphasis)
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)
    return [(scores_hook_name(layer),
             _scores_layer_hook(layer, hs, [alphas[(layer, h)] for h in hs], key_mask, scale_position))
            for layer, hs in sorted(by_layer.items())]
