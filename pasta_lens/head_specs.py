"""The parts of a steering request, each checked on its own: head sets, alphas, the scaled side.

A head set arrives as ``{20: [0, 3]}``, ``[(20, 0), (20, 3)]`` or an object with a ``heads`` attribute;
:func:`normalize_heads` turns any of them into sorted, unique ``(layer, head)`` pairs and :func:`validate_heads`
checks them against a model's ``n_layers x n_heads``. An alpha is a number in [:data:`ALPHA_MIN`, 1]
(:func:`check_alpha`: 1 = no steering, smaller = stronger), the scaled side ``"exclude"`` or ``"include"``.

These checks know nothing of profiles, models or precedence: combining the parts into one decision (explicit
alpha > a profile's per-head alphas > its alpha > 0.01; explicit schedule > the profile's > ``"all"``) is
:mod:`pasta_lens.plan`'s job, which re-exports these names.

Example:
    >>> normalize_heads({21: [5], 20: [3, 0]})
    ((20, 0), (20, 3), (21, 5))
    >>> check_alpha(0.05)
    0.05
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

Head = tuple[int, int]
"""A ``(layer, query_head)`` pair."""

HeadSpec = Mapping[int, Iterable[int]] | Iterable[Head] | Any
"""Heads to steer: ``{layer: [heads]}``, ``[(layer, head), ...]``, a :class:`~pasta_lens.plan.SteeringPlan`, or an
object with a ``heads`` attribute holding such pairs (a :class:`~pasta_lens.HeadProfile`, which is also checked
against the model: see :func:`~pasta_lens.plan.resolve_heads`)."""

AlphaSpec = float | Mapping[Head, float]
"""One alpha for every head, or a mapping ``(layer, head) -> alpha`` that covers every steered head."""

ScalePosition = Literal["exclude", "include"]
"""``"exclude"`` (the paper's): scale the prompt keys outside the span; ``"include"``: scale the span's keys."""

Where = Literal["pattern", "scores"]
"""Where the edit is made: ``"pattern"`` rescales ``hook_pattern`` (default); ``"scores"`` adds ``log(alpha)``
on ``hook_attn_scores`` before the softmax (same result to float rounding)."""

ALPHA_MIN = 1e-30
"""The smallest alpha accepted.

The transform runs in fp32. A query row that sees no emphasised key (a row before the span) is rescaled as a
whole by alpha and renormalised from a sum of about alpha; below fp32's smallest normal number (1.2e-38) that sum
loses precision, and alpha = 1e-46 rounds to 0 so such rows become all zeros (they no longer sum to 1). At
1e-30 the normalising sum stays normal and the absolute error per entry is below 2**-149 / 1e-30 ~ 1e-15. Nothing
is lost by the floor: 1e-30 already weights the non-emphasised keys by exp(-69) relative to the span.
"""

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ head specs
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
    pairs: list[Any]  # entries checked one by one below
    if isinstance(heads, Mapping):
        pairs = []
        for layer, hs in heads.items():
            if isinstance(hs, (str, bytes)) or not isinstance(hs, Iterable):
                raise ValueError(
                    f"The heads of layer {layer!r} must be a list of head indices; got {hs!r}. "
                    f"Use {{{layer!r}: [{hs!r}]}} for one head."
                )
            pairs += [(layer, head) for head in hs]
    elif isinstance(heads, (str, bytes)) or not isinstance(heads, Iterable):
        raise ValueError(
            f"Heads must be {{layer: [heads]}}, [(layer, head), ...] or a HeadProfile; got "
            f"{type(heads).__name__} {heads!r:.80}."
        )
    else:
        pairs = list(heads)
    out: set[Head] = set()
    for pair in pairs:
        try:
            layer, head = pair
            layer, head = _as_index(layer), _as_index(head)
        except (TypeError, ValueError):
            raise ValueError(
                f"Each steered head must be a (layer, head) pair of non-negative integers; got "
                f"{pair!r}. Use {{20: [0, 3]}} or [(20, 0), (20, 3)]."
            ) from None
        out.add((layer, head))
    if not out:
        raise ValueError(
            "The head set is empty: name at least one (layer, head) to steer, "
            "e.g. {20: [0, 3]}, or load a profile with load_profile(...)."
        )
    return tuple(sorted(out))


def _as_index(x: Any) -> int:
    if isinstance(x, bool) or int(x) != x or int(x) < 0:
        raise ValueError(x)
    return int(x)


def group_by_layer(pairs: Iterable[tuple[int, T]]) -> dict[int, list[T]]:
    """``{layer: [values]}`` from ``(layer, value)`` pairs: layers ascending, values in the order given.

    The shape every per-layer hook factory needs (one hook per layer, holding only its own heads).

    Example:
        >>> group_by_layer([(21, 5), (20, 0), (20, 3)])
        {20: [0, 3], 21: [5]}
    """
    grouped: dict[int, list[T]] = {}
    for layer, value in pairs:
        grouped.setdefault(layer, []).append(value)
    return dict(sorted(grouped.items()))


def validate_heads(heads: tuple[Head, ...], n_layers: int, n_heads: int) -> None:
    """Raise ``ValueError`` naming the valid range if a head lies outside an ``n_layers x n_heads`` model."""
    for layer, head in heads:
        if layer >= n_layers or head >= n_heads:
            raise ValueError(
                f"Head ({layer}, {head}) is out of range for a model with {n_layers} layers and "
                f"{n_heads} query heads: use layers 0..{n_layers - 1} and heads 0..{n_heads - 1}."
            )


# ------------------------------------------------------------------------------------------ alphas, scaled side
def check_alpha(alpha: Any, head: Head | None = None) -> float:
    """``alpha`` as a float, or ``ValueError`` unless ``ALPHA_MIN <= alpha <= 1``."""
    where = f" for head {head}" if head is not None else ""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1]; got {alpha!r}{where}.") from None
    if not (0.0 < a <= 1.0) or math.isnan(a):
        raise ValueError(f"alpha must be in (0, 1] (1 = no steering, smaller = stronger); got {a}{where}.")
    if a < ALPHA_MIN:
        raise ValueError(
            f"alpha {a:g}{where} is below the floor {ALPHA_MIN:g}: in fp32 the rescaled attention "
            "underflows (rows that see no emphasised key would no longer sum to 1). Use alpha >= "
            f"{ALPHA_MIN:g}; it already removes all but exp(-69) of the attention outside the span."
        )
    return a


def check_scale_position(scale_position: Any) -> ScalePosition:
    """``scale_position`` itself, after checking it is ``"exclude"`` or ``"include"``."""
    if scale_position not in ("exclude", "include"):
        raise ValueError(f"scale_position must be 'exclude' or 'include'; got {scale_position!r}.")
    return scale_position


def describe_alpha(alphas: AlphaSpec | Mapping[Head, float]) -> str:
    """A short human-readable form of alphas: ``"0.01"``, or ``"per head, 0.01-0.43"``."""
    if isinstance(alphas, Mapping):
        values = sorted({float(a) for a in alphas.values()})
        if len(values) == 1:
            return f"{values[0]:g}"
        return f"per head, {values[0]:.3g}-{values[-1]:.3g}" if values else "per head"
    return f"{float(alphas):g}"
