"""What every steering method shares: the head set, the prompt key mask over a hook's keys, the query-row schedule,
and the one way an edit touches only the steered heads.

All methods take the same inputs as :func:`pasta_lens.pasta_hooks`: an :class:`~pasta_lens.spans.Emphasis` (or a
bool key mask ``[batch, prompt]``, True = emphasised) and a head set (``"all"``, ``{layer: [heads]}``,
``[(layer, head), ...]`` or a :class:`~pasta_lens.head_profile.HeadProfile`). Keys are indexed absolutely, as PASTA's:
key ``j`` of a pattern / score tensor with ``K`` keys is position ``j`` of the emphasis' tokens (left padding
included), and its ``Q`` query rows are positions ``K - Q .. K - 1`` (:func:`pasta_lens.schedule.query_positions`),
so an edit is the same with and without the KV cache. Keys beyond the prompt (generated tokens) are never
emphasised.

:func:`edit_heads` applies an edit ``f`` to the steered heads' slice ``[batch, steered, query, key]`` in fp32 and
puts it back, so unsteered heads stay bit-identical; a layer whose every head is steered is edited whole (no
gather / scatter copies). :func:`edit_rows` keeps the rows a schedule leaves unsteered bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from pasta_lens.kernels import key_mask_of, may_edit_in_place
from pasta_lens.plan import Head, HeadSpec, ScheduleSpec, resolve_heads
from pasta_lens.schedule import Schedule, query_positions
from pasta_lens.spans import Emphasis

HeadsArg = str | HeadSpec
"""``"all"`` (every head of every layer) or any head spec :func:`pasta_lens.plan.resolve_heads` accepts."""


def all_heads(model: Any) -> tuple[Head, ...]:
    """Every ``(layer, query_head)`` of ``model``."""
    return tuple((layer, head) for layer in range(int(model.cfg.n_layers)) for head in range(int(model.cfg.n_heads)))


def last_layers(model: Any, n: int) -> dict[int, list[int]]:
    """Every head of the last ``n`` layers: SEKA's ``layers="lastN"``.

    Example:
        >>> hooks("seka", model, em, heads=last_layers(model, 10), projections=proj)
    """
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if not 1 <= int(n) <= n_layers:
        raise ValueError(f"last_layers needs 1 <= n <= {n_layers} (the model's layers); got {n}.")
    return {layer: list(range(n_heads)) for layer in range(n_layers - int(n), n_layers)}


def method_heads(model: Any, heads: HeadsArg, *, allow_transfer: bool = False) -> tuple[Head, ...]:
    """The steered ``(layer, head)`` pairs: ``"all"``, or a head spec checked against ``model``."""
    if isinstance(heads, str):
        if heads != "all":
            raise ValueError(
                f"heads must be 'all', {{layer: [heads]}}, [(layer, head), ...] or a HeadProfile; got {heads!r}."
            )
        return all_heads(model)
    return resolve_heads(model, heads, allow_transfer=allow_transfer)


def n_kv_heads(model: Any) -> int:
    """Key/value heads per layer (``cfg.n_key_value_heads``, or ``n_heads`` without grouped-query attention)."""
    return int(getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)


def prompt_mask(emphasis: Emphasis | Bool[Tensor, "batch pos"]) -> Bool[Tensor, "batch prompt"]:
    """The checked key mask of the emphasis (see :func:`pasta_lens.kernels.key_mask_of`)."""
    return key_mask_of(emphasis)


def real_tokens(emphasis: Emphasis | Tensor) -> Bool[Tensor, "batch prompt"] | None:
    """Which prompt positions hold real tokens (not left padding); None for a bare key mask (no padding known)."""
    return emphasis.attention_mask.bool() if isinstance(emphasis, Emphasis) else None


def keys_mask(mask: Bool[Tensor, "batch prompt"], act: Tensor, layer: int) -> Bool[Tensor, "batch key"]:
    """The emphasis over ``act``'s keys (last dim), on its device; keys beyond the prompt are False.

    Raises:
        ValueError: fewer keys than prompt positions, or a batch the mask does not cover.
    """
    n_keys, batch = act.shape[-1], act.shape[0]
    n_prompt = mask.shape[1]
    if n_keys < n_prompt:
        raise ValueError(
            f"Layer {layer} sees {n_keys} keys but the emphasis covers {n_prompt} prompt positions: run "
            "the model on emphasis.tokens (or a continuation of them)."
        )
    if mask.shape[0] not in (1, batch):
        raise ValueError(
            f"The key mask has {mask.shape[0]} rows but the batch has {batch}: build the emphasis from "
            "the same prompts you run (or one row to broadcast)."
        )
    out = torch.zeros(mask.shape[0], n_keys, dtype=torch.bool, device=act.device)
    out[:, :n_prompt] = mask.to(act.device)
    return out


def row_exponents(
    schedule: Schedule, n_queries: int, n_keys: int, n_prompt: int, device: torch.device
) -> Float[Tensor, " query"] | None:
    """Each query row's strength exponent under ``schedule`` (1 = full, 0 = untouched); None when every row of this
    pass is full (e.g. ``"prompt"`` at prefill), so the edit takes its whole-tensor path."""
    if schedule.is_all:
        return None
    exponents = schedule.exponents(query_positions(n_queries, n_keys, device=device), n_prompt)
    return None if bool((exponents == 1).all()) else exponents


def edit_rows(
    act: Float[Tensor, "batch head query key"],
    edited: Float[Tensor, "batch head query key"],
    exponents: Float[Tensor, " query"] | None,
) -> Float[Tensor, "batch head query key"]:
    """``edited`` on the rows a schedule steers, ``act`` (bit-identical) on the rows it leaves alone."""
    if exponents is None:
        return edited
    return torch.where((exponents > 0)[None, None, :, None], edited, act)


def no_other_reader(act: Tensor, hook: Any) -> bool:
    """Whether an fp32 activation may be overwritten in place: no autograd graph records it and this is the only
    hook on its point (so no cache or user hook holds the unedited tensor). Same rule as PASTA's fast path
    (:func:`pasta_lens.kernels.may_edit_in_place`)."""
    return may_edit_in_place(act, hook)


EditFn = Callable[[Tensor, bool], Tensor]
"""``f(steered_fp32, in_place) -> edited``: the edit of one layer's steered heads ``[batch, steered, query, key]``
(fp32); with ``in_place=True`` it may overwrite its argument."""


def edit_heads(act: Tensor, heads: list[int], layer: int, hook: Any, edit: EditFn) -> Tensor:
    """Apply ``edit`` to ``heads`` of a ``[batch, head, query, key]`` activation; every other head is untouched.

    The edit runs in fp32 and is cast back. When the layer's every head is steered, the whole tensor is edited
    (in place where :func:`no_other_reader` allows: the arithmetic is the same, so are the numbers); otherwise the
    steered heads are gathered, edited and scattered back into a copy.
    """
    n_heads = act.shape[1]
    if max(heads) >= n_heads:
        raise ValueError(f"Layer {layer} has {n_heads} heads; cannot steer head {max(heads)}.")
    if len(heads) == n_heads:
        in_place = no_other_reader(act, hook)
        return edit(act if in_place else act.float(), in_place).to(act.dtype)
    idx = torch.tensor(heads, device=act.device)
    return act.index_copy(1, idx, edit(act.index_select(1, idx).float(), True).to(act.dtype))


def check_schedule(name: str, schedule: ScheduleSpec, why: str | None = None) -> Schedule:
    """The parsed schedule; for a method without per-row strength (``why`` says why), ``ValueError`` unless it is
    ``"all"``."""
    parsed = Schedule.parse(schedule)
    if why is not None and not parsed.is_all:
        raise ValueError(f"{name} has no per-row strength ({why}), so only schedule='all' applies; got {schedule!r}.")
    return parsed


def positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0), else ``ValueError`` naming the parameter."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}.") from None
    if not (x > 0 or (allow_zero and x == 0)) or x != x or x == float("inf"):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0; got {value!r}.")
    return x
