"""Spotlight (Venkateswaran & Contractor, 2025, "Spotlight Your Instructions", arXiv 2505.12025): raise the share of
attention on the highlighted span to a target proportion ``t`` wherever it is below it, on ``hook_pattern``.

With ``p`` the current share of attention on the emphasised keys ``E`` and ``t`` the target, rows with
``0 < p < t`` get the bias ``b = log(t / p)`` on ``E``'s scores:

    A'[q, k] = A[q, k] * r^[k in E] / sum_j A[q, j] * r^[j in E],    r = t / p

(rows already at or above ``t``, and rows that cannot see the span, ``p = 0``, are left alone). The renormalised
share is ``t / (t + 1 - p)``: close to ``t`` when ``p`` is small, not exactly ``t``, as in the original.

The public code (IBM's agent-lifecycle-toolkit, ``altk/pre_llm/spotlight/spotlight.py``, ``attention_bias_hook``,
Apache-2.0) measures ``p`` once per sample, layer and forward pass, over every head and query row of that pass, and
applies ``softmax(log(A + 1e-10) + b [k in E])`` to every head of every layer; its target defaults to 0.2. With
Hugging Face's KV-cached generation a pass is the prompt (prefill) or one generated token, so ``p`` is pooled over
the prompt's rows, and taken per generated row. ``granularity="sample"`` (the default) does exactly that whatever
the caching: prompt rows share one ``p`` per sample, each generated (or teacher-forced) row has its own, so cached
and uncached generation agree. ``granularity="row"`` measures ``p`` per head and query row instead (the reading of
the paper's per-token description).

Differences from the original, pinned by ``tests/test_methods_parity.py``: the original adds 1e-10 to ``A`` before
the log, so masked (future, padding) keys get ~1e-10 of attention back; here masked keys stay exactly 0 (max
difference ~1e-9); ``p`` here counts only real query rows (the original also counts left-padding rows, which makes
a padded batch differ from its rows run alone).

Example:
    >>> hooks = spotlight_hooks(model, em, target=0.2)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import HookFn, pattern_hook_name
from pasta_lens.methods.common import (
    HeadsArg,
    check_schedule,
    edit_heads,
    keys_mask,
    method_heads,
    positive,
    prompt_mask,
    real_tokens,
    row_exponents,
)
from pasta_lens.plan import ScheduleSpec, group_by_layer
from pasta_lens.schedule import query_positions
from pasta_lens.spans import Emphasis

DEFAULT_TARGET = 0.2
"""The original's default target proportion (``SpotLightMetadata.alpha``)."""

Granularity = Literal["sample", "row"]


def real_rows(real: Tensor | None, n_queries: int, n_keys: int, batch: int, device: torch.device) -> Tensor:
    """``[batch, query]``: True for query rows that are real tokens (prompt positions not padded, or generated)."""
    if real is None:
        return torch.ones(batch, n_queries, dtype=torch.bool, device=device)
    positions = query_positions(n_queries, n_keys, device=device)
    real = real.to(device)
    inside = positions < real.shape[1]
    out = torch.ones(real.shape[0], n_queries, dtype=torch.bool, device=device)
    out[:, inside] = real[:, positions[inside]]
    return out.expand(batch, n_queries) if out.shape[0] == 1 else out


def spotlight(
    pattern: Float[Tensor, "batch head query key"],
    span: Bool[Tensor, "batch key"],
    target: float,
    granularity: Granularity,
    rows: Bool[Tensor, "batch query"],
    prompt_rows: Bool[Tensor, " query"],
    exponents: Tensor | None,
    in_place: bool = False,
) -> Float[Tensor, "batch head query key"]:
    """Rescale the span's attention towards ``target`` (fp32 in, fp32 out; see the module docstring).

    ``rows``: the real (not padding) query rows; ``prompt_rows``: the rows at prompt positions. Only the span's
    columns are multiplied and each row is divided by its new sum ``total + (r - 1) * on_span``; rows with ``r = 1``
    are divided by exactly 1, so they stay bit-identical.
    """
    idx = span[0].nonzero()[:, 0] if span.shape[0] == 1 else None  # one mask for every row: its span's columns
    on_span = (pattern.index_select(-1, idx) if idx is not None else pattern * span[:, None, None, :]).sum(dim=-1)
    total = pattern.sum(dim=-1)  # [batch, head, query]
    if granularity == "sample":
        weight = rows[:, None, :].float()
        row_on, row_total = (on_span * weight).sum(dim=1), (total * weight).sum(dim=1)  # [batch, query]
        prompt = prompt_rows[None, :].float()
        pooled = (row_on * prompt).sum(-1) / (row_total * prompt).sum(-1).clamp_min(1e-30)  # [batch]
        share = torch.where(prompt_rows[None, :], pooled[:, None], row_on / row_total.clamp_min(1e-30))
        share = share[:, None, :]  # [batch, 1, query]
    else:
        share = on_span / total.clamp_min(1e-30)
    ratio = torch.where((share > 0) & (share < target), target / share.clamp_min(1e-30), 1.0).expand(on_span.shape)
    if exponents is not None:  # rows a schedule leaves alone get r ** 0 = 1
        ratio = torch.pow(ratio, exponents[None, None, :])
    denom = torch.where(ratio == 1.0, 1.0, total + (ratio - 1.0) * on_span)
    out = pattern if in_place else pattern.clone()
    if idx is not None:
        out.index_copy_(-1, idx, out.index_select(-1, idx) * ratio[..., None])
    else:
        out.mul_(torch.where(span[:, None, None, :], ratio[..., None], 1.0))
    return out.div_(denom.clamp_min(torch.finfo(torch.float32).tiny)[..., None])


def _layer_hook(
    layer: int,
    heads: list[int],
    mask: Tensor,
    real: Tensor | None,
    target: float,
    granularity: Granularity,
    schedule: Any,
) -> HookFn:
    def hook(pattern: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        span = keys_mask(mask, pattern, layer)
        n_queries, n_keys = pattern.shape[-2], pattern.shape[-1]
        rows = real_rows(real, n_queries, n_keys, pattern.shape[0], pattern.device)
        prompt_rows = query_positions(n_queries, n_keys, device=pattern.device) < mask.shape[1]
        exponents = row_exponents(schedule, n_queries, n_keys, mask.shape[1], pattern.device)
        return edit_heads(
            pattern,
            heads,
            layer,
            hook,
            lambda x, in_place: spotlight(x, span, target, granularity, rows, prompt_rows, exponents, in_place),
        )

    return hook


def spotlight_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    target: float = DEFAULT_TARGET,
    granularity: Granularity = "sample",
    schedule: ScheduleSpec = None,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """Spotlight hooks on ``blocks.L.attn.hook_pattern``.

    Args:
        model: the model the hooks are for.
        emphasis: an :class:`~pasta_lens.spans.Emphasis` (its attention mask keeps padding rows out of ``p``) or a
            bool key mask ``[batch, prompt]``.
        heads: ``"all"`` (the original's) or a head set; with ``"sample"``, ``p`` is taken over the steered heads.
        target: the attention share the span is raised to, in (0, 1).
        granularity: ``"sample"`` (the public code's: one ``p`` per sample and layer) or ``"row"`` (per head and
            query row).
        schedule: which query rows are steered; ``e(q)`` turns the ratio ``r`` into ``r ** e``.

    Example:
        >>> hooks = spotlight_hooks(model, em, target=0.3, granularity="row")
    """
    target = positive("Spotlight's target", target)
    if not target < 1.0:
        raise ValueError(f"Spotlight's target is an attention share in (0, 1); got {target}.")
    if granularity not in ("sample", "row"):
        raise ValueError(f"Spotlight's granularity must be 'sample' or 'row'; got {granularity!r}.")
    sched = check_schedule("spotlight", schedule)
    pairs = method_heads(model, heads, allow_transfer=allow_transfer)
    mask = prompt_mask(emphasis)
    real = real_tokens(emphasis)
    return [
        (pattern_hook_name(layer), _layer_hook(layer, hs, mask, real, target, granularity, sched))
        for layer, hs in group_by_layer(pairs).items()
    ]
