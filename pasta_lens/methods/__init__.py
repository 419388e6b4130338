"""Attention-steering methods of 2024-2026 as TransformerLens hooks, behind one registry.

Each method is a hook factory with PASTA's inputs (an :class:`~pasta_lens.spans.Emphasis` and a head set), on the
hook points where its authors' code acts; they compose with :func:`pasta_lens.steer` and :func:`pasta_lens.generate`
(``method=name``), the query-row :mod:`~pasta_lens.schedule` where a method has per-row strength, and both backends
(``TransformerBridge``; ``HookedTransformer`` on TransformerLens 3.x). See ``docs/methods.md`` for the table of
methods, papers, hook points, parameters, fitted artefacts, known differences from the originals and costs.

Example:
    >>> from pasta_lens import emphasize, load_model, methods
    >>> model = load_model("smollm2-135m-instruct")
    >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
    >>> methods.available()
    ('pasta', 'instaboost', 'guide', 'spotlight', 'seka', 'prism_delta', 'spa')
    >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=methods.hooks("instaboost", model, em, factor=5))
    >>> proj = methods.fit("seka", model)           # SEKA / PRISM-Delta: fit once, save, reuse
    >>> hooks = methods.hooks("seka", model, em, projections=proj)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pasta_lens.methods.common import all_heads, last_layers
from pasta_lens.methods.fit import fit_projections
from pasta_lens.methods.projections import KeyProjections, load_projections
from pasta_lens.methods.registry import METHODS, MethodInfo, available, batch_for, get, hooks, parse_spec, resolve, run
from pasta_lens.methods.spa import spa_batch
from pasta_lens.methods.triplets import ContrastTriplet, synthetic_triplets


def fit(name: str, model: Any, triplets: Sequence[ContrastTriplet] | None = None, **settings: Any) -> KeyProjections:
    """Fit the artefact a method needs (SEKA, PRISM-Delta): :func:`pasta_lens.methods.fit.fit_projections`.

    Example:
        >>> proj = fit("prism_delta", model, n=200)
        >>> proj.save("prism-smollm2.safetensors")
    """
    if not get(name).fitted:
        raise ValueError(
            f"{name} needs no fitting (fitted methods: {', '.join(n for n, m in METHODS.items() if m.fitted)})."
        )
    return fit_projections(model, name, triplets, **settings)


__all__ = [
    "METHODS",
    "ContrastTriplet",
    "KeyProjections",
    "MethodInfo",
    "all_heads",
    "available",
    "batch_for",
    "fit",
    "fit_projections",
    "get",
    "hooks",
    "last_layers",
    "load_projections",
    "parse_spec",
    "resolve",
    "run",
    "spa_batch",
    "synthetic_triplets",
]
