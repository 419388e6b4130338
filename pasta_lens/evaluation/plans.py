"""What each evaluated method steers: one :class:`~pasta_lens.plan.SteeringPlan` per method, resolved once.

The evaluation's head source (``profile=`` a registry name, a path or a :class:`~pasta_lens.HeadProfile`; or
``heads=`` a plain head set) is read once (:func:`load_source`). Each steered method then gets its plan by the one
precedence rule of :mod:`pasta_lens.plan`, with "explicit" meaning the method's own option (``pasta:alpha=0.1``)
if it has one, else the evaluation's (``evaluate(alpha=...)``, ``--alpha``):

==========  ==========================================================================================
pasta       ``resolve_plan(model, profile, alpha, schedule)``: explicit alpha > the profile's per-head
            alphas > the profile's ``alpha`` > 0.01; explicit schedule > the profile's recorded schedule
            > ``"all"``. ``pasta:k=N`` is that plan's ``subset`` of the N best heads (:func:`ranked_heads`),
            each keeping its own alpha.
all-heads   every head of the model; explicit alpha > 0.01 (never the profile's alphas: these are not its
            heads); the schedule as for ``pasta`` (so the two differ in heads only)
random      a seeded random set of the profile's size (or ``k``), alpha and schedule as ``all-heads``
==========  ==========================================================================================

A plain ``heads=`` list carries no alphas and no recorded schedule, so there the rule gives 0.01 and ``"all"``
unless the evaluation or the method says otherwise. Unsteered methods have no plan (None).

Example:
    >>> source = load_source("smollm2-135m-instruct", model)
    >>> method_plan(parse_method("pasta:k=10"), model, source).describe()
    "heads: 10 (profile 'smollm2-135m-instruct', top 10)   alpha: per head, ...   schedule: prompt"
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from typing import Any

from pasta_lens.evaluation.specs import Method
from pasta_lens.plan import AlphaSpec, Head, SteeringPlan, normalize_heads, resolve_plan
from pasta_lens.registry import load_profile
from pasta_lens.schedule import Schedule


@dataclass(frozen=True)
class HeadSource:
    """Where the profile-based methods take their heads from, read once per evaluation.

    Attributes:
        spec: what :func:`~pasta_lens.plan.resolve_plan` is given: a :class:`~pasta_lens.HeadProfile` (its
            per-head alphas, alpha and recorded schedule apply) or a plain head tuple (none do). None: no source
            (only methods that need none can run).
        ranked: the heads best first (:func:`ranked_heads`), for ``k=``.
        description: a few words for the summary (``"profile smollm2-135m-instruct"``, ``"3 heads given"``).
        allow_transfer: whether a profile made on other weights of the same shape was accepted.
    """

    spec: Any = None
    ranked: tuple[Head, ...] = field(default=())
    description: str = "none"
    allow_transfer: bool = False


def ranked_heads(profile: Any) -> tuple[Head, ...]:
    """A profile's heads, best first: by learned alpha (smallest first) when it has per-head alphas, else by mean
    score over its tasks when it has scores, else in its own order (a plain list keeps the order given).

    Example:
        >>> ranked_heads([(20, 0), (3, 1)])
        ((20, 0), (3, 1))
    """
    heads = normalize_heads(profile)
    own = getattr(profile, "head_alphas", None) or {}
    if own:  # a learned profile: the most strongly steered heads first (smallest alpha)
        return tuple(sorted(heads, key=lambda h: (float(own[h]), h)))
    scores = getattr(profile, "scores", None) or {}
    if not scores:
        if isinstance(profile, (list, tuple)):  # keep a user-given order
            seen: list[Head] = []
            for h in profile:
                h = (int(h[0]), int(h[1]))
                if h not in seen:
                    seen.append(h)
            return tuple(seen)
        return heads
    tables = list(scores.values())
    mean = {h: sum(float(t[h[0]][h[1]]) for t in tables) / len(tables) for h in heads}
    return tuple(sorted(heads, key=lambda h: (-mean[h], h)))


def load_source(profile: Any, model: Any = None, allow_transfer: bool = False) -> HeadSource:
    """A :class:`HeadSource` from a registry name, a path, a ``HeadProfile`` or a head list / ``{layer: heads}``.

    With ``model``, a profile must have been made for it: :meth:`HeadProfile.validate_for` refuses another shape,
    and other weights unless ``allow_transfer=True``.

    Example:
        >>> load_source([(20, 0), (21, 3)]).description
        '2 heads given'
    """
    if profile is None:
        return HeadSource()
    if isinstance(profile, (str, os.PathLike)):
        loaded = load_profile(profile)
        if model is not None:
            loaded.validate_for(model, allow_transfer=allow_transfer)
        return HeadSource(loaded, ranked_heads(loaded), f"profile {profile}", allow_transfer)
    if hasattr(profile, "heads"):
        if model is not None and hasattr(profile, "validate_for"):
            profile.validate_for(model, allow_transfer=allow_transfer)
        name = getattr(profile, "registry_name", None) or getattr(profile, "model_name", "")
        return HeadSource(profile, ranked_heads(profile), f"profile {name}".strip(), allow_transfer)
    heads = ranked_heads(list(normalize_heads(profile)) if isinstance(profile, dict) else list(profile))
    return HeadSource(heads, heads, f"{len(heads)} heads given", allow_transfer)


def every_head(model: Any) -> tuple[Head, ...]:
    """All ``(layer, head)`` pairs of ``model``."""
    return tuple((layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads))


def random_heads(model: Any, size: int, seed: int = 0) -> tuple[Head, ...]:
    """A seeded random head set of ``size`` heads (the same for the same model shape, size and seed)."""
    every = every_head(model)
    if not 1 <= size <= len(every):
        raise ValueError(f"A random head set needs 1 to {len(every)} heads; got {size}.")
    return tuple(sorted(random.Random(f"random-heads:{seed}:{size}").sample(every, size)))


def method_plan(
    method: Method,
    model: Any,
    source: HeadSource,
    alpha: AlphaSpec | None = None,
    schedule: Schedule | None = None,
    seed: int = 0,
) -> SteeringPlan | None:
    """The plan ``method`` steers on ``model`` (None for an unsteered method); see the module docstring.

    Args:
        method: a parsed method.
        model: the model (bounds the heads; a profile source was checked against it by :func:`load_source`).
        source: the evaluation's heads.
        alpha, schedule: the evaluation's explicit settings (None: not given), overridden by the method's own.
        seed: chooses the random head set.

    Raises:
        ValueError: a method that needs a profile without one, ``k`` larger than the profile, bad alphas.

    Example:
        >>> method_plan(parse_method("all-heads"), model, HeadSource()).alphas[(0, 0)]
        0.01
    """
    if not method.steered:
        return None
    explicit_alpha = method.alpha if method.alpha is not None else alpha
    explicit_schedule = method.schedule if method.schedule is not None else schedule
    if method.heads == "all" and source.spec is None:
        heads, note = every_head(model), "every head"
        return _plain(model, heads, note, explicit_alpha, explicit_schedule)
    if source.spec is None:
        raise ValueError(
            f"Method {method.name!r} needs a head profile: pass profile= (a registry name, a path "
            "or a HeadProfile) or heads=[(layer, head), ...]."
        )
    base = resolve_plan(model, source.spec, explicit_alpha, explicit_schedule, allow_transfer=source.allow_transfer)
    if method.heads == "profile":
        size = method.k or len(source.ranked)
        if size > len(source.ranked):
            raise ValueError(f"Method {method.name!r} asks for {size} heads but the profile has {len(source.ranked)}.")
        if method.k is None:
            return base
        top = base.subset(source.ranked[:size])
        return dataclasses.replace(top, source=f"{base.source}, top {size}")
    # all-heads / random: the schedule of the profile's plan (same rows steered), never its alphas
    if method.heads == "all":
        heads, note = every_head(model), "every head"
    else:
        size = method.k or len(source.ranked)
        heads, note = random_heads(model, size, seed), f"random, seed {seed}"
    return _plain(model, heads, note, explicit_alpha, base.schedule)


def _plain(
    model: Any, heads: tuple[Head, ...], note: str, alpha: AlphaSpec | None, schedule: Schedule | None
) -> SteeringPlan:
    plan = resolve_plan(model, list(heads), alpha, schedule)
    return dataclasses.replace(plan, source=note)
