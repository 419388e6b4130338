"""InstABoost (Guardieiro et al., 2025, "Instruction Following by Boosting Attention of Large Language Models"):
multiply the attention to the instruction's keys by a factor ``m`` and renormalise, on ``hook_pattern``.

For a steered head with post-softmax attention ``A[q, k]`` and the emphasised prompt keys ``E``:

    A'[q, k] = A[q, k] * w[k] / sum_j A[q, j] * w[j],    w[k] = m  if k in E,  1 otherwise

(``softmax(s + log w)``). The authors' code (BrachioLab/InstABoost, ``src/model_interaction_utils.py``,
``prompt_attention_ablation_hook``) is a TransformerLens hook on ``blocks.L.attn.hook_pattern`` of every layer and
head, steering every query row (prompt and generated), with keys beyond the prompt at weight 1; ``m`` is chosen on
validation from 1, 3, ..., 19 under a fluency floor. It is PASTA with the roles turned round: PASTA divides the
*other prompt* keys by ``1 / alpha`` and leaves generated keys alone, InstABoost multiplies the span by ``m``, which
also down-weights generated keys relative to it; on the prompt's own rows the two coincide (``alpha = 1 / m``).

Differences from the original, each pinned by ``tests/test_methods_parity.py``: the arithmetic runs in fp32 and is
cast back (the original multiplies in the model's dtype); the original multiplies each renormalised row by its mass
before the edit (1 up to rounding), here rows are renormalised to 1 (max difference ~1e-7 in fp32).
``factor=1`` adds no hook (the original returns the pattern unchanged).

Example:
    >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=instaboost_hooks(model, em, factor=5))
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import HookFn, pattern_hook_name
from pasta_lens.methods.common import (
    HeadsArg,
    check_schedule,
    edit_heads,
    edit_rows,
    keys_mask,
    method_heads,
    positive,
    prompt_mask,
    row_exponents,
)
from pasta_lens.plan import ScheduleSpec, group_by_layer
from pasta_lens.spans import Emphasis

DEFAULT_FACTOR = 5.0
"""A middle point of the authors' validation grid (1, 3, ..., 19): tune it on validation."""


def boost(
    pattern: Float[Tensor, "batch head query key"],
    span: Bool[Tensor, "batch key"],
    factor: float,
    exponents: Tensor | None,
    in_place: bool,
) -> Float[Tensor, "batch head query key"]:
    """``A * w / sum(A * w)`` with ``w = factor ** e(q)`` on ``span`` keys (fp32 in, fp32 out)."""
    tiny = torch.finfo(torch.float32).tiny
    if exponents is None:
        w = torch.where(span, factor, 1.0)[:, None, None, :]
        if in_place:
            pattern.mul_(w)
            return pattern.div_(pattern.sum(dim=-1, keepdim=True).clamp_min(tiny))
        scaled = pattern * w
        return scaled / scaled.sum(dim=-1, keepdim=True).clamp_min(tiny)
    row_factor = torch.pow(torch.tensor(factor, device=pattern.device), exponents)  # [query]
    w = torch.where(span[:, None, None, :], row_factor[None, None, :, None], 1.0)
    scaled = pattern * w
    return edit_rows(pattern, scaled / scaled.sum(dim=-1, keepdim=True).clamp_min(tiny), exponents)


def _layer_hook(layer: int, heads: list[int], mask: Tensor, factor: float, schedule: Any) -> HookFn:
    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        span = keys_mask(mask, pattern, layer)
        exponents = row_exponents(schedule, pattern.shape[-2], pattern.shape[-1], mask.shape[1], pattern.device)
        return edit_heads(pattern, heads, layer, hook, lambda x, in_place: boost(x, span, factor, exponents, in_place))

    return hook


def instaboost_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    factor: float = DEFAULT_FACTOR,
    schedule: ScheduleSpec = None,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """InstABoost hooks on ``blocks.L.attn.hook_pattern`` (the paper's: every head of every layer, every row).

    Args:
        model: the model the hooks are for (heads are checked against it).
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, prompt]``.
        heads: ``"all"`` (the paper's) or a head set / profile.
        factor: the multiplier ``m`` on the emphasised keys' attention (> 0; 1 = no steering, < 1 suppresses).
        schedule: which query rows are boosted (:mod:`pasta_lens.schedule`); ``e(q)`` turns ``m`` into ``m ** e``.

    Example:
        >>> hooks = instaboost_hooks(model, em, factor=5)
    """
    factor = positive("InstABoost's factor", factor)
    sched = check_schedule("instaboost", schedule)
    pairs = method_heads(model, heads, allow_transfer=allow_transfer)
    mask = prompt_mask(emphasis)
    if factor == 1.0:
        return []
    return [
        (pattern_hook_name(layer), _layer_hook(layer, hs, mask, factor, sched))
        for layer, hs in group_by_layer(pairs).items()
    ]
