"""Which steered heads carry the effect? Activation patching of heads' outputs between unsteered and steered runs.

:func:`patch_steered_heads` patches the heads' outputs ``blocks.L.attn.hook_z[:, :, h]`` between the unsteered and
the steered run, with TransformerLens' own ``transformer_lens.patching.generic_activation_patch`` (it works on the
``TransformerBridge``). For a metric ``m`` (e.g. ``log P(new) - log P(old)``) and ``effect = m_steered -
m_unsteered``::

    recovered[h] = (m(unsteered run, head h's steered z patched in) - m_unsteered) / effect   (sufficiency)
    removed[h]   = (m_steered - m(steered run, head h's unsteered z patched in)) / effect     (necessity)

:func:`cumulative_patching` patches the k best heads jointly (:func:`head_patch_hooks`; TL's utility patches one
index at a time) and gives the curve metric vs k: k = 0 is the unsteered run, all steered heads give exactly the
steered run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.analysis.inputs import Metric, Prompt, analysis_plan, unpadded_inputs, z_hook_name
from pasta_lens.kernels import HookFn
from pasta_lens.plan import AlphaSpec, Head, HeadSpec, ScalePosition, group_by_layer, normalize_heads, resolve_heads
from pasta_lens.steering import steer


def head_patch_hooks(source: Any, heads: HeadSpec | Sequence[Head]) -> list[tuple[str, HookFn]]:
    """Forward hooks that overwrite ``hook_z[:, :, h]`` of ``heads`` with the values in ``source``.

    Args:
        source: an ``ActivationCache`` (or a mapping) holding ``blocks.L.attn.hook_z`` for the patched layers,
            from a run on the same tokens.
        heads: the heads to patch jointly (any head spec); an empty list patches nothing.

    Returns:
        ``[(hook_name, hook_fn), ...]`` for ``model.run_with_hooks`` / ``model.hooks``.

    Example:
        >>> with steer(model, heads, em):
        ...     _, steered_cache = model.run_with_cache(em.tokens, names_filter=lambda n: n.endswith("hook_z"))
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=head_patch_hooks(steered_cache, heads))
    """
    empty = isinstance(heads, (list, tuple)) and not heads
    by_layer = group_by_layer(() if empty else normalize_heads(heads))

    def make(layer: int, hs: list[int]) -> HookFn:
        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any) -> Tensor:
            src = source[z_hook_name(layer)].to(z.device)
            if src.shape != z.shape:
                raise ValueError(
                    f"Cannot patch {z_hook_name(layer)}: source shape {tuple(src.shape)} != "
                    f"{tuple(z.shape)}. Cache the source from a run on the same tokens."
                )
            out = z.clone()
            out[:, :, hs] = src[:, :, hs].to(z.dtype)
            return out

        return hook

    return [(z_hook_name(layer), make(layer, hs)) for layer, hs in by_layer.items()]


@dataclass(frozen=True)
class HeadPatching:
    """Result of patching steered heads' outputs between the unsteered and the steered run.

    Attributes:
        heads: the patched ``(layer, head)`` pairs, in the order of the tensors below.
        unsteered: the metric of the unsteered run.
        steered: the metric of the steered run.
        into_unsteered: ``[n]`` the metric of the unsteered run with one head's steered output patched in.
        into_steered: ``[n]`` the metric of the steered run with one head's unsteered output patched in.
    """

    heads: tuple[Head, ...]
    unsteered: float
    steered: float
    into_unsteered: Float[Tensor, " n"]
    into_steered: Float[Tensor, " n"]

    def __post_init__(self) -> None:
        n = len(self.heads)
        if self.into_unsteered.shape != (n,) or self.into_steered.shape != (n,):
            raise ValueError(f"HeadPatching needs one value per head ({n}) in into_unsteered and into_steered.")

    @property
    def effect(self) -> float:
        """``steered - unsteered``: the change steering makes to the metric."""
        return self.steered - self.unsteered

    @property
    def recovered(self) -> Float[Tensor, " n"]:
        """Fraction of the effect one head's steered output brings to the unsteered run (sufficiency).

        Undefined (inf/NaN) when steering does not change the metric (``effect == 0``).
        """
        return (self.into_unsteered - self.unsteered) / self.effect

    @property
    def removed(self) -> Float[Tensor, " n"]:
        """Fraction of the effect lost when one head's output is reset to unsteered (necessity)."""
        return (self.steered - self.into_steered) / self.effect

    def ranked(self, by: str = "recovered") -> tuple[Head, ...]:
        """The heads, most important first, by ``"recovered"`` or ``"removed"``."""
        if by not in ("recovered", "removed"):
            raise ValueError(f"rank by 'recovered' or 'removed'; got {by!r}.")
        order = torch.argsort(getattr(self, by), descending=True, stable=True)
        return tuple(self.heads[i] for i in order.tolist())

    def grid(self, n_layers: int, n_heads: int, by: str = "recovered") -> Float[Tensor, "layer head"]:
        """A ``[layer, head]`` tensor of ``recovered`` or ``removed``, NaN at heads that were not patched."""
        if by not in ("recovered", "removed"):
            raise ValueError(f"grid of 'recovered' or 'removed'; got {by!r}.")
        out = torch.full((n_layers, n_heads), float("nan"))
        for (layer, head), value in zip(self.heads, getattr(self, by).tolist()):
            out[layer, head] = value
        return out


def _scalar_metric(metric: Metric) -> Callable[[Tensor], Tensor]:
    def scalar(logits: Tensor) -> Tensor:
        return torch.as_tensor(metric(logits)).float().mean()

    return scalar


def patch_steered_heads(
    model: Any,
    emphasis: Prompt,
    heads: HeadSpec,
    metric: Metric,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    *,
    candidates: HeadSpec | None = None,
    allow_transfer: bool = False,
) -> HeadPatching:
    """Patch each head's ``hook_z`` between the unsteered and the steered run; measure the metric.

    Uses ``transformer_lens.patching.generic_activation_patch`` (one forward per head and direction) with
    ``layer_head_vector_patch_setter`` on activation ``"z"``. The steered -> unsteered direction is the utility
    as is (the "clean" cache is the steered run's); for unsteered -> steered the utility runs inside
    :func:`pasta_lens.steer`, whose hooks stay on while the utility adds and removes its own.

    Args:
        model: a TransformerLens model.
        emphasis: one prompt (no padding) with its span: an Emphasis or a task's ProfilingExample.
        heads: the steered heads.
        metric: logits ``[batch, pos, vocab]`` -> scalar or ``[batch]`` (averaged), e.g.
            ``objectives.target_logprob(n_prompt, new_ids[:1], old_ids[:1])``.
        alpha, scale_position: as in :func:`pasta_lens.pasta_hooks` (None: a profile's per-head alphas, else 0.01).
        candidates: the heads to patch (default: the steered ones).
        allow_transfer: accept a profile (``heads`` or ``candidates``) made on other weights of the same shape.

    Returns:
        A :class:`HeadPatching`.

    Example:
        >>> hp = patch_steered_heads(model, em, heads, metric)
        >>> hp.ranked()[:5]      # the steered heads that carry most of the effect on their own
    """
    import pandas as pd
    from transformer_lens import patching

    tokens, key_mask = unpadded_inputs(emphasis)
    plan = analysis_plan(model, heads, alpha, scale_position, allow_transfer)
    patched = plan.heads if candidates is None else resolve_heads(model, candidates, allow_transfer=allow_transfer)
    scalar = _scalar_metric(metric)
    layers = sorted({layer for layer, _ in patched})
    names = {z_hook_name(layer) for layer in layers}
    index_df = pd.DataFrame(list(patched), columns=["layer", "head_index"])

    def run_patch(clean_cache: Any) -> Tensor:
        return (
            patching.generic_activation_patch(
                model, tokens, clean_cache, scalar, patching.layer_head_vector_patch_setter, "z", index_df=index_df
            )
            .float()
            .cpu()
        )

    with torch.inference_mode():
        logits, unsteered_cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        base = float(scalar(logits))
        with steer(model, plan, key_mask):
            logits, steered_cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            full = float(scalar(logits))
            into_steered = run_patch(unsteered_cache)
        into_unsteered = run_patch(steered_cache)
    return HeadPatching(patched, base, full, into_unsteered, into_steered)


def cumulative_patching(
    model: Any,
    emphasis: Prompt,
    heads: HeadSpec,
    order: Sequence[Head],
    metric: Metric,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    *,
    ks: Sequence[int] | None = None,
    allow_transfer: bool = False,
) -> list[tuple[int, float]]:
    """The metric of the unsteered run with the first k heads of ``order`` patched in jointly from the steered run.

    Args:
        model, emphasis, heads, metric, alpha, scale_position: as in :func:`patch_steered_heads`.
        order: the heads to add one by one, e.g. ``patch_steered_heads(...).ranked()``.
        ks: which k to evaluate (default ``0 .. len(order)``).
        allow_transfer: accept a profile made on other weights of the same shape.

    Returns:
        ``[(k, metric), ...]``: k = 0 is the unsteered run; patching every steered head gives the steered run.

    Example:
        >>> curve = cumulative_patching(model, em, heads, hp.ranked(), metric)
        >>> plot_ablation({"patch top-k heads": curve}, "k")
    """
    tokens, key_mask = unpadded_inputs(emphasis)
    plan = analysis_plan(model, heads, alpha, scale_position, allow_transfer)
    order = tuple((layer, head) for layer, head in order)  # lists (from JSON) become hashable pairs
    ks = list(range(len(order) + 1)) if ks is None else [int(k) for k in ks]
    if any(not 0 <= k <= len(order) for k in ks):
        raise ValueError(f"every k must be in 0..{len(order)} (the number of heads in order); got {ks}.")
    scalar = _scalar_metric(metric)
    with torch.inference_mode():
        with steer(model, plan, key_mask):
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
        curve = []
        for k in ks:
            logits = model.run_with_hooks(tokens, fwd_hooks=head_patch_hooks(cache, order[:k]))
            curve.append((k, float(scalar(logits))))
    return curve
