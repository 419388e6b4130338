"""GUIDE (Silva et al., 2024, "Pay Attention to What Matters"): add a constant ``delta`` to the pre-softmax attention
scores of the tagged tokens, on ``hook_attn_scores``.

For a steered head with scores ``s[q, k]`` (already scaled and masked) and the emphasised prompt keys ``E``:

    s'[q, k] = s[q, k] + delta * e(q) * [k in E],    A' = softmax(s')

i.e. every emphasised key's attention is multiplied by ``exp(delta)`` before renormalising. The authors' code
(netop-team/pay_attention_experiment, ``src/attention_saver.py``, ``change_and_fetch_attention``: ``attention_mask[:,
:, :, start:end] += delta``) edits every head of the chosen layers (``all``, ``first``, ``last`` or a list) and
returns early when a forward pass has one query (``q_len == 1``): with the KV cache, generated tokens' rows are
*not* steered, only the prompt's. That is ``schedule="prompt"`` here, the default, and it gives the same steering
with and without the cache (the original would steer every row of an uncached generation). ``delta`` is a free
parameter (the README's example runs ``--delta 1``); the paper sweeps it per task.

Differences from the original, pinned by ``tests/test_methods_parity.py``: none in the arithmetic (an fp32 addition on
the same keys); ``delta=0`` adds no hook.

Example:
    >>> hooks = guide_hooks(model, em, delta=1.0)
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import HookFn, scores_hook_name
from pasta_lens.methods.common import (
    HeadsArg,
    check_schedule,
    edit_heads,
    keys_mask,
    method_heads,
    prompt_mask,
    row_exponents,
)
from pasta_lens.plan import ScheduleSpec, group_by_layer
from pasta_lens.spans import Emphasis

DEFAULT_DELTA = 1.0
DEFAULT_SCHEDULE = "prompt"
"""The original steers the prefill only (it skips one-query forward passes, i.e. KV-cached decode steps)."""


def add_delta(
    scores: Float[Tensor, "batch head query key"],
    span: Bool[Tensor, "batch key"],
    delta: float,
    exponents: Tensor | None,
    in_place: bool,
) -> Float[Tensor, "batch head query key"]:
    """``s + delta * e(q)`` on ``span`` keys; zero elsewhere, so untouched entries stay bit-identical."""
    if exponents is None:
        bias = (span.float() * delta)[:, None, None, :]
        return scores.add_(bias) if in_place else scores + bias
    bias = span.float()[:, None, None, :] * (delta * exponents)[None, None, :, None]
    return scores + bias


def _layer_hook(layer: int, heads: list[int], mask: Tensor, delta: float, schedule: Any) -> HookFn:
    def hook(scores: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        span = keys_mask(mask, scores, layer)
        exponents = row_exponents(schedule, scores.shape[-2], scores.shape[-1], mask.shape[1], scores.device)
        return edit_heads(
            scores, heads, layer, hook, lambda x, in_place: add_delta(x, span, delta, exponents, in_place)
        )

    return hook


def guide_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    delta: float = DEFAULT_DELTA,
    schedule: ScheduleSpec = DEFAULT_SCHEDULE,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """GUIDE hooks on ``blocks.L.attn.hook_attn_scores``: ``+delta`` on the emphasised keys' scores.

    Args:
        model: the model the hooks are for.
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, prompt]``.
        heads: ``"all"`` (the original's ``layers='all'``), or a head set (``{0: [...all heads]}`` is ``first``).
        delta: the additive bias on the emphasised keys' scores (any finite number; 0 = no steering).
        schedule: which query rows are steered; default ``"prompt"`` (the original's, see the module docstring).

    Example:
        >>> hooks = guide_hooks(model, em, delta=2.0, schedule="all")
    """
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"GUIDE's delta must be a number; got {delta!r}.") from None
    if not torch.isfinite(torch.tensor(delta)):
        raise ValueError(f"GUIDE's delta must be finite; got {delta}.")
    sched = check_schedule("guide", schedule)
    pairs = method_heads(model, heads, allow_transfer=allow_transfer)
    mask = prompt_mask(emphasis)
    if delta == 0.0:
        return []
    return [
        (scores_hook_name(layer), _layer_hook(layer, hs, mask, delta, sched))
        for layer, hs in group_by_layer(pairs).items()
    ]
