"""One profile from several: the paper's ``union`` strategy lifted from per-task top-k sets to whole profiles.

A union steers every head of every profile given. A head that several profiles steer takes the strongest
(smallest) alpha it has in any of them, each profile read as it is steered (:func:`pasta_lens.plan.head_alphas`:
its per-head alphas, else its alpha):

    heads(U) = heads(P_1) | ... | heads(P_n),     alpha_U(h) = min_{i: h in P_i} alpha_{P_i}(h)

The parts must belong to one model (same shape; fingerprints or weights hashes that agree:
:func:`pasta_lens.fingerprint.same_weights`) and be steered with one schedule, which the union records. Used for
e.g. the multi-task intersection plus heads learned for the one task it misses (``pasta-lens profile union``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pasta_lens.fingerprint import same_weights
from pasta_lens.head_profile import HeadProfile
from pasta_lens.plan import Head, head_alphas, spec_schedule


def union_profiles(
    profiles: Sequence[HeadProfile], names: Sequence[str] | None = None, command: str | None = None
) -> HeadProfile:
    """One profile steering every head of ``profiles``: the paper's ``union`` strategy, lifted from per-task
    top-k sets to whole profiles (e.g. the multi-task intersection plus heads learned for the one task it misses).

    A head in several profiles takes the strongest (smallest) alpha it has in any of them; a profile without
    per-head alphas steers its heads at its ``alpha``. Every profile must be made on the same weights (same shape;
    fingerprints, or weights hashes, that agree) and be steered with the same schedule (their recorded
    ``provenance["schedule"]``, default ``all``), which the union records. Tasks, example counts and score tables
    are merged (for a task in several profiles, the first profile's table); ``provenance["union_of"]`` says where
    each part came from.

    Raises:
        ValueError: fewer than two profiles, different shapes, weights or schedules.

    Example:
        >>> both = union_profiles([load_profile("smollm2-135m-instruct-metric"),
        ...                        load_profile("json-learned.json")])   # e.g. from pasta-lens profile --method learned
        >>> both.head_alphas    # every head at its alpha
    """
    profiles = list(profiles)
    names = list(names) if names is not None else [p.model_name for p in profiles]
    if len(profiles) < 2 or len(names) != len(profiles):
        raise ValueError("union_profiles needs at least two profiles (and one name per profile when names are given).")
    first = profiles[0]
    for name, p in zip(names[1:], profiles[1:]):
        if (p.n_layers, p.n_heads) != (first.n_layers, first.n_heads):
            raise ValueError(
                f"{name} is for a {p.n_layers} x {p.n_heads} model, {names[0]} for {first.n_layers} x "
                f"{first.n_heads}: a union needs profiles of one model."
            )
        if same_weights(p, first) is False:
            raise ValueError(
                f"{name} and {names[0]} were made on different weights: a union needs profiles of one model."
            )
    schedules = {str(spec_schedule(p)) for p in profiles}
    if len(schedules) != 1:
        raise ValueError(
            f"The profiles are steered with different schedules ({', '.join(sorted(schedules))}); one "
            "profile is steered with one schedule: make them with the same --schedule."
        )
    alphas: dict[Head, float] = {}
    for p in profiles:
        for head, a in head_alphas(p.heads, p).items():  # each profile as it is steered (pasta_lens.plan)
            alphas[head] = min(alphas.get(head, 1.0), a)
    tasks = tuple(dict.fromkeys(t for p in profiles for t in p.tasks))
    scores: dict[str, Any] = {}
    n_examples: dict[str, int] = {}
    for p in profiles:
        for task, table in p.scores.items():
            scores.setdefault(task, table)
        for task, n in p.n_examples.items():
            n_examples.setdefault(task, n)
    uniform = len(set(alphas.values())) == 1
    return HeadProfile(
        model_name=first.model_name,
        n_layers=first.n_layers,
        n_heads=first.n_heads,
        heads=tuple(alphas),
        weights_hash=first.weights_hash,
        fingerprint=first.fingerprint,
        tasks=tasks,
        method="union of: " + " | ".join(f"{n}: {p.method}" for n, p in zip(names, profiles)),
        alpha=next(iter(alphas.values())) if uniform else min(alphas.values()),
        k=None,
        strategy=None,
        n_examples=n_examples,
        command=command,
        scores=scores,
        head_alphas={} if uniform else alphas,
        provenance={
            "schedule": schedules.pop(),
            "union_of": [
                {
                    "profile": n,
                    "method": p.method,
                    "command": p.command,
                    "date": p.date,
                    "tasks": list(p.tasks),
                    "heads": [list(h) for h in p.heads],
                    "head_alphas": [[h[0], h[1], a] for h, a in sorted(p.head_alphas.items())],
                }
                for n, p in zip(names, profiles)
            ],
        },
    )
