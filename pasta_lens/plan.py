"""What to steer and how strongly, decided once: head specs, alpha and schedule precedence, :class:`SteeringPlan`.

A steering request arrives in many forms: ``{20: [0, 3]}``, ``[(20, 0), (20, 3)]``, a
:class:`~pasta_lens.HeadProfile` with its own per-head alphas and recorded schedule, an explicit ``alpha=`` or
``schedule=`` on top. :func:`resolve_plan` turns any of them into one frozen :class:`SteeringPlan` that holds
every decision (the heads, one alpha per head, the schedule, the scaled side of the span, where the edit is
made), checked once against the model. Everything that steers (:func:`pasta_lens.pasta_hooks`,
:func:`pasta_lens.steer`, :func:`pasta_lens.generate`, the fast engine, the evaluation harness, analysis, the
learner, :func:`~pasta_lens.union_profiles`) consumes a plan; none of them re-derives an alpha or a schedule.

The precedence rule, in one place:

==========  ===========================================================================================
alpha       explicit ``alpha=`` (a float or ``{(layer, head): alpha}``) > the profile's per-head alphas
            (``head_alphas``) > the profile's ``alpha`` > :data:`DEFAULT_ALPHA` (0.01)
schedule    explicit ``schedule=`` > the profile's recorded ``provenance["schedule"]`` > ``"all"``
==========  ===========================================================================================

Each part is parsed and checked on its own (a head set, an alpha, the scaled side) by
:mod:`pasta_lens.head_specs`, whose names are all importable from here too; this module combines them.

Example:
    >>> plan = resolve_plan(model, load_profile("smollm2-135m-instruct"))
    >>> print(plan.describe())
    heads: 70 (profile 'smollm2-135m-instruct')   alpha: per head, 0.01-0.44   schedule: prompt
    >>> with steer(model, plan, em): ...              # exactly what generate(model, text) steers
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from pasta_lens.head_specs import ALPHA_MIN as ALPHA_MIN  # re-exported: callers import every head_specs name here
from pasta_lens.head_specs import (
    AlphaSpec,
    Head,
    HeadSpec,
    ScalePosition,
    Where,
    check_alpha,
    check_scale_position,
    describe_alpha,
    group_by_layer,
    normalize_heads,
    validate_heads,
)
from pasta_lens.schedule import Schedule

ScheduleSpec = str | Schedule | None
"""When to steer: ``"all"`` (default), ``"prompt"``, ``"first:N"``, ``"decay:G"`` or a :class:`Schedule`."""

DEFAULT_ALPHA = 0.01
"""The paper's strength, used when neither the call nor the heads say otherwise."""


# ------------------------------------------------------------------------------------------ heads on a model
class ProfileLike(Protocol):
    """What :func:`resolve_heads` needs of a profile: a check against the model it steers."""

    def validate_for(self, model: Any, *, allow_transfer: bool = False) -> None: ...


def is_profile(spec: Any) -> TypeGuard[ProfileLike]:
    """Whether ``spec`` is a profile (it can check itself against a model: ``validate_for``)."""
    return callable(getattr(spec, "validate_for", None)) and not isinstance(spec, SteeringPlan)


def resolve_heads(model: Any, heads: HeadSpec, *, allow_transfer: bool = False) -> tuple[Head, ...]:
    """The one way a head set meets a model: normalise it and check it against ``model``.

    A profile (any object with ``validate_for``, i.e. a :class:`~pasta_lens.HeadProfile`) is first checked with
    ``profile.validate_for(model, allow_transfer=allow_transfer)`` (shape always; weights unless
    ``allow_transfer=True``); then every head must lie inside ``model.cfg.n_layers x model.cfg.n_heads``.

    Raises:
        ValueError: a malformed head set, a head out of range, or a profile made for another model.

    Example:
        >>> resolve_heads(model, load_profile("smollm2-135m-instruct"))   # raises on any other model
    """
    if is_profile(heads):
        heads.validate_for(model, allow_transfer=allow_transfer)
    pairs = normalize_heads(heads)
    validate_heads(pairs, int(model.cfg.n_layers), int(model.cfg.n_heads))
    return pairs


# ----------------------------------------------------------------------------------------- alpha, schedule
def head_alphas(heads: tuple[Head, ...], spec: Any = None, alpha: AlphaSpec | None = None) -> dict[Head, float]:
    """One checked alpha per head, by the precedence rule: explicit ``alpha`` > ``spec``'s per-head alphas >
    ``spec``'s ``alpha`` > :data:`DEFAULT_ALPHA`.

    ``spec`` is what the heads came from (a profile, or a plain head set, which carries no alphas). An explicit
    per-head mapping must cover exactly ``heads``; a profile's per-head alphas must cover them (extra entries
    are dropped, so a top-k subset of a learned profile keeps its heads' own alphas).

    Example:
        >>> head_alphas(((20, 0),))                                  # {(20, 0): 0.01}
        >>> head_alphas(profile.heads, profile)                      # the profile's own
        >>> head_alphas(profile.heads, profile, alpha=0.1)           # 0.1 for every head
    """
    if alpha is not None:
        if isinstance(alpha, Mapping):
            given = {(int(k[0]), int(k[1])): v for k, v in alpha.items()}
            missing, extra = set(heads) - set(given), set(given) - set(heads)
            if missing or extra:
                raise ValueError(
                    f"A per-head alpha mapping must cover exactly the steered heads; missing "
                    f"{sorted(missing)}, not steered {sorted(extra)}."
                )
        else:
            given = {h: alpha for h in heads}
        return {h: check_alpha(given[h], h) for h in heads}
    own = getattr(spec, "head_alphas", None) if not isinstance(spec, Mapping) else None
    if isinstance(own, Mapping) and own:
        own = {(int(k[0]), int(k[1])): v for k, v in own.items()}
        uncovered = sorted(set(heads) - set(own))
        if uncovered:
            raise ValueError(
                f"The profile's per-head alphas do not cover the steered heads {uncovered}: pass "
                "alpha= explicitly to steer heads it has no alpha for."
            )
        return {h: check_alpha(own[h], h) for h in heads}
    own_alpha = getattr(spec, "alpha", None) if not isinstance(spec, Mapping) else None
    value = own_alpha if isinstance(own_alpha, (int, float)) and not isinstance(own_alpha, bool) else DEFAULT_ALPHA
    return {h: check_alpha(value, h) for h in heads}


def spec_schedule(spec: Any = None, schedule: ScheduleSpec = None) -> Schedule:
    """The schedule by the precedence rule: explicit ``schedule`` > ``spec``'s recorded
    ``provenance["schedule"]`` > ``"all"`` (every prompt and generated token, as the paper).

    Example:
        >>> spec_schedule({20: [0]})                                  # Schedule(kind='all', ...)
        >>> spec_schedule(load_profile("smollm2-135m-instruct"))      # its recorded 'prompt'
        >>> spec_schedule(profile, "all")                             # the paper's, whatever the profile says
    """
    if schedule is not None:
        return Schedule.parse(schedule)
    provenance = getattr(spec, "provenance", None) if not isinstance(spec, Mapping) else None
    recorded = provenance.get("schedule") if isinstance(provenance, Mapping) else None
    return Schedule.parse(recorded)


# ------------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class SteeringPlan:
    """Every steering decision, made once: which heads, at which alpha each, on which query rows, how.

    Build it with :func:`resolve_plan` (checked against a model) or :func:`plan_from_spec` (no model: plain
    head sets only). Hand it to :func:`pasta_lens.pasta_hooks`, :func:`pasta_lens.steer` or
    :func:`pasta_lens.generate` as the ``heads`` argument; they steer exactly this and refuse an ``alpha=`` or
    ``schedule=`` beside it (a plan is already resolved).

    Attributes:
        heads: sorted, unique ``(layer, head)`` pairs.
        alphas: ``{(layer, head): alpha}`` for exactly ``heads``, each in [:data:`ALPHA_MIN`, 1].
        schedule: which query rows are steered (:class:`~pasta_lens.schedule.Schedule`).
        scale_position: ``"exclude"`` (scale keys outside the span) or ``"include"`` (scale the span).
        where: ``"pattern"`` (rescale ``hook_pattern``) or ``"scores"`` (``log(alpha)`` on ``hook_attn_scores``;
            only with schedule ``all``).
        source: where the heads came from, in a few words (``"profile 'smollm2-135m-instruct'"``, ``"3 heads
            given"``).
    """

    heads: tuple[Head, ...]
    alphas: Mapping[Head, float]
    schedule: Schedule = field(default_factory=Schedule)
    scale_position: ScalePosition = "exclude"
    where: Where = "pattern"
    source: str = ""

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        heads = normalize_heads(self.heads)
        set_("heads", heads)
        set_("alphas", head_alphas(heads, alpha=dict(self.alphas)))
        set_("schedule", Schedule.parse(self.schedule))
        check_scale_position(self.scale_position)
        if self.where not in ("pattern", "scores"):
            raise ValueError(
                f"where must be 'pattern' (edit hook_pattern) or 'scores' (edit hook_attn_scores); got {self.where!r}."
            )
        if self.where == "scores" and not self.schedule.is_all:
            raise ValueError(
                "schedule= is applied on hook_pattern: use where='pattern' (the default) with a "
                f"schedule other than 'all' (got {str(self.schedule)!r})."
            )

    def layers(self) -> list[tuple[int, list[int], list[float]]]:
        """``(layer, heads, alphas)`` per steered layer, layers ascending: what one layer's hook needs.

        Example:
            >>> SteeringPlan(((1, 0), (0, 2)), {(1, 0): 0.1, (0, 2): 0.01}).layers()
            [(0, [2], [0.01]), (1, [0], [0.1])]
        """
        return [(layer, hs, [self.alphas[(layer, h)] for h in hs]) for layer, hs in group_by_layer(self.heads).items()]

    def subset(self, heads: HeadSpec) -> SteeringPlan:
        """The same plan on some of its heads (each keeps its own alpha), e.g. a profile's top-k.

        Raises:
            ValueError: a head that is not in this plan.
        """
        pairs = normalize_heads(heads)
        extra = sorted(set(pairs) - set(self.heads))
        if extra:
            raise ValueError(f"Heads {extra} are not in this plan; a subset keeps the plan's own heads.")
        return SteeringPlan(
            pairs, {h: self.alphas[h] for h in pairs}, self.schedule, self.scale_position, self.where, self.source
        )

    @property
    def alpha(self) -> AlphaSpec:
        """The alphas as the steering arithmetic takes them: one float when every head shares it, else the map."""
        values = set(self.alphas.values())
        return next(iter(values)) if len(values) == 1 else dict(self.alphas)

    def describe(self) -> str:
        """One line for logs and the CLI: ``heads: 70 (profile 'x')   alpha: per head, 0.01-0.44   schedule:
        prompt`` (plus the scaled side and hook point when they are not the defaults)."""
        source = f" ({self.source})" if self.source else ""
        text = f"heads: {len(self.heads)}{source}   alpha: {describe_alpha(self.alphas)}   schedule: {self.schedule}"
        if self.scale_position != "exclude":
            text += f"   scale: {self.scale_position}"
        if self.where != "pattern":
            text += f"   where: {self.where}"
        return text


def _source(spec: Any, heads: tuple[Head, ...]) -> str:
    if is_profile(spec):
        name = getattr(spec, "registry_name", None) or getattr(spec, "model_name", "")
        return f"profile {name!r}"
    return f"{len(heads)} head{'s' if len(heads) != 1 else ''} given"


def _from_plan(
    plan: SteeringPlan, alpha: AlphaSpec | None, schedule: ScheduleSpec, scale_position: Any, where: Any
) -> SteeringPlan:
    if alpha is not None or schedule is not None:
        raise ValueError(
            "A SteeringPlan is already resolved: pass alpha= and schedule= to resolve_plan, not beside a plan."
        )
    if (scale_position, where) not in ((plan.scale_position, plan.where), ("exclude", "pattern")):
        raise ValueError(
            "A SteeringPlan already fixes scale_position and where: build another plan with "
            "resolve_plan(...) to change them."
        )
    return plan


def plan_from_spec(
    spec: HeadSpec,
    alpha: AlphaSpec | None = None,
    schedule: ScheduleSpec = None,
    scale_position: ScalePosition = "exclude",
    where: Where = "pattern",
) -> SteeringPlan:
    """A plan without a model to check it against: plain head sets (or a plan) only.

    A profile needs a model (a profile made on another model must not be steered silently): use
    :func:`resolve_plan`.

    Example:
        >>> plan_from_spec({20: [0, 3]}, alpha=0.05).alphas
        {(20, 0): 0.05, (20, 3): 0.05}
    """
    if isinstance(spec, SteeringPlan):
        return _from_plan(spec, alpha, schedule, scale_position, where)
    if is_profile(spec):
        raise ValueError(
            "Got a profile but no model to check it against (a profile made on another model would "
            "be used silently): call resolve_plan(model, profile), pasta_hooks(profile, em, "
            "model=model) or steer(model, profile, em); pass profile.heads to skip the check on "
            "purpose."
        )
    heads = normalize_heads(spec)
    return SteeringPlan(
        heads,
        head_alphas(heads, spec, alpha),
        spec_schedule(spec, schedule),
        scale_position,
        where,
        _source(spec, heads),
    )


def resolve_plan(
    model: Any,
    spec: HeadSpec,
    alpha: AlphaSpec | None = None,
    schedule: ScheduleSpec = None,
    scale_position: ScalePosition = "exclude",
    where: Where = "pattern",
    *,
    allow_transfer: bool = False,
) -> SteeringPlan:
    """Resolve a steering request against ``model``, once: the :class:`SteeringPlan` everything steers with.

    Args:
        model: the TransformerLens model to be steered (its ``cfg`` bounds the heads; a profile is checked
            against its shape and weights).
        spec: ``{layer: [heads]}``, ``[(layer, head), ...]``, a :class:`~pasta_lens.HeadProfile` or a plan.
        alpha: explicit strength (a float or a per-head mapping); None: the profile's per-head alphas, else the
            profile's ``alpha``, else 0.01.
        schedule: explicit schedule; None: the profile's recorded one, else ``"all"``.
        scale_position, where: see :class:`SteeringPlan`.
        allow_transfer: accept a profile made on other weights of the same shape (a fine-tune of its model).

    Raises:
        ValueError: malformed heads, out of range, a profile for another model, a bad alpha or schedule.

    Example:
        >>> resolve_plan(model, load_profile("smollm2-135m-instruct")).schedule     # its recorded 'prompt'
        >>> resolve_plan(model, {20: [0, 3]}, alpha=0.1).describe()
        'heads: 2 (2 heads given)   alpha: 0.1   schedule: all'
    """
    if isinstance(spec, SteeringPlan):
        plan = _from_plan(spec, alpha, schedule, scale_position, where)
        validate_heads(plan.heads, int(model.cfg.n_layers), int(model.cfg.n_heads))
        return plan
    heads = resolve_heads(model, spec, allow_transfer=allow_transfer)
    return SteeringPlan(
        heads,
        head_alphas(heads, spec, alpha),
        spec_schedule(spec, schedule),
        scale_position,
        where,
        _source(spec, heads),
    )
