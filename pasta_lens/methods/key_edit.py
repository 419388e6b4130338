"""SEKA and PRISM-Delta: edit the keys (and, for PRISM-Delta-V, the values) of the emphasised tokens with fitted
projections, on ``hook_k`` / ``hook_k_normed`` (before RoPE) and ``hook_v``.

For an emphasised prompt token with key ``k`` of key/value head ``h`` in a steered layer (projections from
:mod:`pasta_lens.methods.fit`):

    SEKA (Li et al., ICLR 2026):            k' = k + (g+ k P+_h + g- k P-_h) / 2      (g- = None: k' = k + g+ k P+_h)
    PRISM-Delta (Ge et al., COLM 2026):     k' = k + g w_h k P_delta,h,   w_h = softplus(norm_diff_h - min_diff)
    PRISM-Delta-V:                          v' = v + g_v w^v_h v P^v_delta,h

Every other token's key is untouched, so are the queries: the edit moves the emphasised keys towards directions
that raise their scores with queries that "ask" for them. It acts where the authors' forward hooks on ``k_proj`` /
``k_norm`` (and ``v_proj``) act: on the key before RoPE (RoPE then rotates the edited key), every query head of an
edited key/value head sees it, and the KV cache stores the edited key. Prompt positions only: a KV-cached decode
step (fewer positions than the prompt) passes through, and generated keys are never emphasised, so cached and
uncached generation agree. Heads are key/value heads: a head set must list every query head of a group it steers.

The authors' code (``src/model/prism_llm.py`` of YuyaoGe/PRISM-DELTA: ``attach_projection`` for SEKA, whose
``(gp * pos + gn * neg) / 2`` is the paper's equal weighting, ``attach_prism_k``, ``attach_prism_kv``) applies it in
fp32 on the layers given (SEKA ``last10`` by default, PRISM-Delta ``all``); defaults here are the authors':
SEKA ``g+ = 0.8, g- = 0.2`` (``SEKALLM``), PRISM-Delta ``g = 0.4`` and ``g_v = 0.1`` (README, BiasBios).

Known differences, pinned by ``tests/test_methods_parity.py``: an earlier SEKA version (waylonli/SEKA
``src/model/seka_llm.py``) applied ``P-`` to the *non*-highlighted tokens instead; the authors' hooks check the mask
against the sequence length and so skip a batch whose mask is shorter (here the prompt positions of any
continuation are edited); the optional feature maps ``phi`` (tanh, elu) are not implemented (the default, None, is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pasta_lens.kernels import HookFn
from pasta_lens.methods.common import HeadsArg, check_schedule, method_heads, n_kv_heads, positive, prompt_mask
from pasta_lens.methods.fit import key_point
from pasta_lens.methods.projections import KeyProjections, as_bshd, from_bshd, load_projections
from pasta_lens.plan import ScheduleSpec, group_by_layer
from pasta_lens.spans import Emphasis

SEKA_GAINS = (0.8, 0.2)
EDITS_KEYS = "it edits keys, which every later query row reads"
PRISM_GAIN, PRISM_VALUE_GAIN = 0.4, 0.0
DeltaFn = Callable[[Tensor], Tensor]
"""``f(x [tokens, steered_kv, d] fp32) -> delta`` of the same shape."""
LayerEdit = Callable[[int, list[int]], tuple[list[int], DeltaFn] | None]
"""``make(layer, kv_heads) -> (kv heads actually edited, delta)``, or None when the layer needs no hook."""


def _projections(model: Any, projections: Any, method: str, allow_transfer: bool) -> KeyProjections:
    if projections is None:
        raise ValueError(
            f"{method} needs fitted projections: proj = pasta_lens.methods.fit({method!r}, model) (save "
            "it with proj.save(path)), then pass projections=proj or projections=path."
        )
    if not isinstance(projections, KeyProjections):
        projections = load_projections(projections)
    if projections.method != method:
        raise ValueError(
            f"These projections were fitted for {projections.method!r}, not {method!r}: fit "
            f"pasta_lens.methods.fit({method!r}, model)."
        )
    projections.validate_for(model, allow_transfer=allow_transfer)
    point = key_point(model)
    if projections.key_point != point:
        raise ValueError(
            f"The projections were fitted on {projections.key_point} but this model's keys are edited at "
            f"{point}: fit them on this backend."
        )
    return projections


def kv_selection(model: Any, heads: HeadsArg, layers: tuple[int, ...], allow_transfer: bool) -> dict[int, list[int]]:
    """``{layer: [kv heads]}`` to edit: ``"all"`` = every kv head of the fitted layers; a head set must cover whole
    groups (a key edit reaches every query head reading that key)."""
    n_kv = n_kv_heads(model)
    group = int(model.cfg.n_heads) // n_kv
    if isinstance(heads, str) and heads == "all":
        return {layer: list(range(n_kv)) for layer in layers}
    out = {}
    for layer, qs in group_by_layer(method_heads(model, heads, allow_transfer=allow_transfer)).items():
        if layer not in layers:
            raise ValueError(f"Layer {layer} has no fitted projection (fitted: {layers[0]}..{layers[-1]}).")
        chosen = []
        for g in range(n_kv):
            members = set(range(g * group, (g + 1) * group))
            if members <= set(qs):
                chosen.append(g)
            elif members & set(qs):
                got = sorted(members & set(qs))
                raise ValueError(
                    f"Key/value head {g} of layer {layer} is read by query heads {sorted(members)}; a "
                    f"key edit changes all of them, so list all or none (got {got})."
                )
        out[layer] = chosen
    return out


def _edit_hook(layer: int, kv: list[int], mask: Tensor, delta: DeltaFn, layout: str, n_kv: int, d_head: int) -> HookFn:
    n_prompt = mask.shape[1]

    def hook(x: Tensor, hook: Any) -> Tensor:
        view = as_bshd(x, layout, n_kv, d_head)  # [batch, pos, kv, d]
        if view.shape[1] < n_prompt:  # a KV-cached decode step: its keys are generated tokens, never emphasised
            return x
        if mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"The key mask has {mask.shape[0]} rows but the batch has {x.shape[0]}: build the "
                "emphasis from the same prompts you run (or one row to broadcast)."
            )
        rows, positions = mask.to(x.device).expand(x.shape[0], n_prompt).nonzero(as_tuple=True)
        idx = torch.tensor(kv, device=x.device)
        out = view.clone()
        tokens = out[rows, positions]  # [emphasised, kv, d]
        sel = tokens.index_select(1, idx).float()  # [emphasised, steered, d]
        tokens.index_copy_(1, idx, (sel + delta(sel)).to(x.dtype))
        out[rows, positions] = tokens  # only the emphasised tokens' steered heads change
        return from_bshd(out, layout, x.shape)

    return hook


def _project(p: Tensor, kv: list[int]) -> Callable[[Tensor], Tensor]:
    """``x -> x @ P_h`` per kv head (the authors' ``einsum('n h d, h d k -> n h k')``)."""
    mats = p[kv]

    def apply(x: Tensor) -> Tensor:
        return torch.einsum("nhd,hde->nhe", x, mats.to(x.device))

    return apply


def _hooks(
    model: Any, emphasis: Emphasis | Tensor, selection: dict[int, list[int]], point: str, layout: str, make: LayerEdit
) -> list[tuple[str, HookFn]]:
    mask = prompt_mask(emphasis)
    if mask.shape[1] < 2:
        raise ValueError(
            "Key edits need a prompt of at least 2 tokens (a 1-token decode step could not be told from the prompt)."
        )
    out = []
    for layer, kv in sorted(selection.items()):
        made = make(layer, kv)
        if made is not None:
            out.append(
                (
                    f"blocks.{layer}.attn.{point}",
                    _edit_hook(layer, made[0], mask, made[1], layout, n_kv_heads(model), int(model.cfg.d_head)),
                )
            )
    return out


def _nonzero(p: Tensor, kv: list[int]) -> list[int]:
    """The kv heads whose projection is not all zeros (heads below ``min_diff`` are not steered)."""
    return [g for g in kv if bool(p[g].abs().sum() > 0)]


def seka_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    projections: Any = None,
    gain_pos: float = SEKA_GAINS[0],
    gain_neg: float | None = SEKA_GAINS[1],
    schedule: ScheduleSpec = None,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """SEKA hooks: ``k' = k + (g+ k P+ + g- k P-) / 2`` on the emphasised keys (``gain_neg=None``: ``k + g+ k P+``).

    Args:
        projections: a :class:`~pasta_lens.methods.projections.KeyProjections` fitted with ``fit("seka", model)``,
            or its path.
        heads: ``"all"`` (every fitted layer), or a head set of whole key/value groups
            (:func:`~pasta_lens.methods.common.last_layers` gives SEKA's ``lastN``).

    Example:
        >>> hooks = seka_hooks(model, em, last_layers(model, 10), projections="seka.safetensors")
    """
    check_schedule("seka", schedule, why=EDITS_KEYS)
    proj = _projections(model, projections, "seka", allow_transfer)
    g_pos = positive("SEKA's gain_pos", gain_pos, allow_zero=True)
    g_neg = None if gain_neg is None else positive("SEKA's gain_neg", gain_neg, allow_zero=True)
    selection = kv_selection(model, heads, proj.layers, allow_transfer)

    def make(layer: int, kv: list[int]) -> tuple[list[int], DeltaFn] | None:
        i = proj.layer_index(layer)
        kv = _nonzero(proj.tensors["pos"][i], kv)
        if not kv or (g_pos == 0 and not g_neg):
            return None
        pos, neg = _project(proj.tensors["pos"][i], kv), _project(proj.tensors["neg"][i], kv)
        if g_neg is None:
            return kv, lambda x: g_pos * pos(x)
        return kv, lambda x: (g_pos * pos(x) + g_neg * neg(x)) / 2

    return _hooks(model, emphasis, selection, proj.key_point, proj.layouts["key"], make)


def prism_delta_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    projections: Any = None,
    gain: float = PRISM_GAIN,
    gain_v: float = PRISM_VALUE_GAIN,
    schedule: ScheduleSpec = None,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """PRISM-Delta hooks: ``k' = k + g w_h k P_delta`` on the emphasised keys (and ``v`` with ``gain_v > 0``).

    Args:
        projections: :class:`~pasta_lens.methods.projections.KeyProjections` from ``fit("prism_delta", model)``
            (``values=True`` for ``gain_v``), or its path.
        gain: the key gain ``g`` (the README's BiasBios setting 0.4; CounterFact 2.5, pronouns 0.05).
        gain_v: the value gain (PRISM-Delta-V; README 0.1); 0 leaves values alone.

    Example:
        >>> hooks = prism_delta_hooks(model, em, projections=proj, gain=0.4)
    """
    check_schedule("prism_delta", schedule, why=EDITS_KEYS)
    proj = _projections(model, projections, "prism_delta", allow_transfer)
    g = positive("PRISM-Delta's gain", gain, allow_zero=True)
    g_v = positive("PRISM-Delta's gain_v", gain_v, allow_zero=True)
    if g_v > 0 and not proj.has_values:
        raise ValueError("gain_v > 0 needs value projections: fit them with fit('prism_delta', model, values=True).")
    selection = kv_selection(model, heads, proj.layers, allow_transfer)
    min_diff = float(proj.settings["min_diff"])

    def maker(matrix: str, norms: str, gain_: float) -> LayerEdit:
        def make(layer: int, kv: list[int]) -> tuple[list[int], DeltaFn] | None:
            i = proj.layer_index(layer)
            kv = _nonzero(proj.tensors[matrix][i], kv)
            if not kv or gain_ == 0:
                return None
            project = _project(proj.tensors[matrix][i], kv)
            w = torch.nn.functional.softplus(proj.tensors[norms][i] - min_diff)[kv]  # [steered]
            return kv, lambda x: gain_ * w.to(x.device)[:, None] * project(x)

        return make

    hooks = _hooks(model, emphasis, selection, proj.key_point, proj.layouts["key"], maker("diff", "norm_diffs", g))
    if g_v > 0:
        hooks += _hooks(
            model, emphasis, selection, "hook_v", proj.layouts["value"], maker("value_diff", "value_norm_diffs", g_v)
        )
    return hooks
