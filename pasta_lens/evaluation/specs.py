"""Method specs: the names a user gives the harness (``"pasta:alpha=0.1"``) parsed into :class:`Method`.

A *method* says how a prompt is shown and whether (and how) it is steered:

=============  =================================================================================================
zero-shot      markers removed, no steering
star           the span left in the text as ``*span*``, no steering ("*-marked")
quote          the span left in the text as ``"span"``, no steering ('"-marked')
few-shot       three demonstrations from the train split before the query, markers removed, no steering
all-heads      PASTA on every head of every layer
random         PASTA on a seeded random head set of the same size as the profile
pasta          PASTA on the head profile
=============  =================================================================================================

Options follow a colon: ``pasta:alpha=0.1`` (another strength), ``pasta:k=20`` (the 20 best heads of the profile,
:func:`pasta_lens.evaluation.plans.ranked_heads`), ``random:k=20``, ``pasta:schedule=prompt`` (also ``first:N``,
``decay:G``: :mod:`pasta_lens.schedule`), combined with commas (``pasta:schedule=first:4,alpha=0.1``).

**Other steering methods.** A name that is none of the above is looked up in the registry of steering methods,
:mod:`pasta_lens.methods` (``available()`` and ``parse_spec(spec) -> (name, params)``), when that package is
installed: ``instaboost:factor=5`` becomes ``Method(steering="instaboost", params=(("factor", 5.0),),
heads="all")``. That is the only seam between the spec parser and the registry (:func:`steering_registry`); the
harness runs such a method through the registry's hooks on the hooks engine
(:func:`pasta_lens.evaluation.scoring.steering_context`).

Everything here is text in, frozen dataclass out: no model is needed (the CLI checks specs before loading one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pasta_lens.schedule import Schedule

BASELINES: tuple[str, ...] = ("zero-shot", "star", "quote", "few-shot", "all-heads", "random", "pasta")
"""Every built-in method (``methods="all"``), in the order of the tables."""

ALPHAS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5)
"""The alpha ablation's strengths."""

LABELS = {
    "zero-shot": "Zero-shot",
    "star": "`*`-marked",
    "quote": '`"`-marked',
    "few-shot": "Few-shot (3)",
    "all-heads": "PASTA, all heads",
    "random": "PASTA, random heads",
    "pasta": "PASTA, profile heads",
}
"""Table labels of the built-in methods (a method's options follow in brackets)."""

PRESETS: dict[str, dict[str, Any]] = {
    "zero-shot": {},
    "star": {"marking": "*"},
    "quote": {"marking": '"'},
    "few-shot": {"few_shot": 3},
    "all-heads": {"heads": "all"},
    "random": {"heads": "random"},
    "pasta": {"heads": "profile"},
}

PASTA_OPTIONS = ("alpha", "k", "schedule")


@dataclass(frozen=True)
class Method:
    """How prompts are shown and steered.

    Attributes:
        name: the spec it was parsed from (``"pasta:alpha=0.1"``), its id in rows and tables.
        marking: ``"none"``, ``"*"`` or ``'"'``.
        few_shot: number of train demonstrations before the query.
        heads: ``"none"`` (unsteered), ``"all"``, ``"random"`` or ``"profile"``.
        alpha: explicit steering strength (None: the evaluation's, else the profile's; :mod:`pasta_lens.plan`).
        k: use the ``k`` best profile heads; for ``random``, the set size.
        schedule: which query rows are steered (None: the evaluation's, else the profile's recorded one).
        steering: the steering method acting on the heads: ``"pasta"``, or a name of :mod:`pasta_lens.methods`.
        params: that method's own options, e.g. ``(("factor", 5.0),)`` (empty for PASTA, whose options are above).
    """

    name: str
    marking: str = "none"
    few_shot: int = 0
    heads: str = "none"
    alpha: float | None = None
    k: int | None = None
    schedule: Schedule | None = None
    steering: str = "pasta"
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.heads not in ("none", "all", "random", "profile"):
            raise ValueError(f"Method.heads must be none, all, random or profile; got {self.heads!r}.")
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]; got {self.alpha} in method {self.name!r}.")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be a positive number of heads; got {self.k} in method {self.name!r}.")
        if self.steering != "pasta" and (self.heads == "none" or self.alpha is not None):
            raise ValueError(
                f"Method {self.name!r}: a registered steering method steers heads (heads='all' or "
                "'profile') with its own params, not PASTA's alpha."
            )

    @property
    def steered(self) -> bool:
        return self.heads != "none"

    @property
    def label(self) -> str:
        base, _, opts = self.name.partition(":")
        return LABELS.get(base, base) + (f" ({opts})" if opts else "")


def steering_registry() -> ModuleType | None:
    """The registry of other steering methods, :mod:`pasta_lens.methods`, or None where it is not installed.

    The registry's contract (what the harness calls): ``available() -> names``, ``parse_spec(spec) -> (name,
    params)``, ``hooks(name, model, emphasis, heads="all", **params) -> fwd_hooks`` and ``batch_for(name, x)``
    (the batch the hooks run on: ``x``, or ``x`` stacked on itself for a two-pass method such as SPA).
    """
    try:
        from pasta_lens import methods
    except ImportError:
        return None
    return methods


def _registered(base: str) -> bool:
    registry = steering_registry()
    return base != "pasta" and registry is not None and base in registry.available()


def parse_method(spec: str) -> Method:
    """``"zero-shot"``, ``"star"``, ``"quote"``, ``"few-shot"``, ``"all-heads"``, ``"random"``, ``"pasta"``,
    optionally with options: ``"pasta:alpha=0.1"``, ``"pasta:k=20"``, ``"random:k=20,alpha=0.1"``,
    ``"pasta:schedule=prompt"``, ``"pasta:schedule=first:4,alpha=0.1"``; or a registered steering method with
    its own options (``"instaboost:factor=5"``, see :func:`steering_registry`).

    Raises:
        ValueError: an unknown name or option, naming the accepted ones.

    Example:
        >>> parse_method("pasta:alpha=0.1").alpha
        0.1
    """
    base, _, opts = spec.strip().partition(":")
    registry = steering_registry()
    if base not in PRESETS and registry is not None and _registered(base):
        name, params = registry.parse_spec(spec.strip())
        return Method(name=spec.strip(), heads="all", steering=name, params=tuple(sorted(params.items())))
    if base not in PRESETS:
        others = [m for m in (registry.available() if registry is not None else ()) if m != "pasta"]
        raise ValueError(
            f"Unknown method {spec!r}; use one of {BASELINES}, optionally with options such as "
            "pasta:alpha=0.1, pasta:k=20 or pasta:schedule=prompt"
            + (f", or a steering method: {', '.join(others)}." if others else ".")
        )
    kwargs: dict[str, Any] = dict(PRESETS[base])
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        try:
            if not sep or key not in PASTA_OPTIONS:
                raise ValueError
            kwargs[key] = Schedule.parse(value) if key == "schedule" else float(value) if key == "alpha" else int(value)
        except ValueError as err:
            hint = f" ({err})" if key == "schedule" and sep else ""
            raise ValueError(
                f"Bad option {item!r} in method {spec!r}: use alpha=<float>, k=<int> or "
                f"schedule=<all|prompt|first:N|decay:G>{hint}."
            ) from None
    if any(o in kwargs for o in PASTA_OPTIONS) and kwargs.get("heads", "none") == "none":
        raise ValueError(
            f"Method {spec!r}: alpha=, k= and schedule= only apply to steered methods (all-heads, random, pasta)."
        )
    return Method(name=spec.strip(), **kwargs)


def parse_methods(methods: str | Sequence[str]) -> list[Method]:
    """``"all"`` (every baseline), one spec or a list of specs -> :class:`Method` s (each name once).

    Raises:
        ValueError: a bad spec, or the same spec twice (its rows would be one configuration).
    """
    specs = list(BASELINES) if methods == "all" else ([methods] if isinstance(methods, str) else list(methods))
    parsed = [parse_method(m) for m in specs]
    names = [m.name for m in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"Methods {twice} are given more than once; name each method once.")
    return parsed


def ablation_methods(
    alphas: Sequence[float] = ALPHAS,
    ks: Sequence[int] = (),
    default_alpha: float = 0.01,
    schedules: Sequence[str | Schedule] = (),
    default_schedule: str | Schedule | None = "all",
) -> list[str]:
    """Method specs of the ablations: PASTA at each alpha (other than the default), with the top-k heads, and
    under each schedule (other than the default).

    Example:
        >>> ablation_methods((0.001, 0.01, 0.1), (5,))
        ['pasta:alpha=0.001', 'pasta:alpha=0.1', 'pasta:k=5']
    """
    out = [f"pasta:alpha={a:g}" for a in alphas if not math.isclose(a, default_alpha)]
    default = Schedule.parse(default_schedule)
    return (
        out
        + [f"pasta:k={k}" for k in ks]
        + [f"pasta:schedule={Schedule.parse(s)}" for s in schedules if Schedule.parse(s) != default]
    )
