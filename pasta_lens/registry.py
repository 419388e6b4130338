"""The shipped profiles: list them, load one by name, find the one made on a model, and the default head set.

Shipped profiles live in the repository's top-level ``profiles/`` directory, installed as the package
``pasta_lens.profiles`` (see ``pyproject.toml``) and read with ``importlib.resources``, so
``load_profile("smollm2-135m-instruct")`` works from an editable checkout and from a wheel alike.

"This model" is decided by identity, never by name: :func:`find_profile` returns the shipped profile with the
model's shape and behaviour (:func:`pasta_lens.fingerprint.identity_mismatch`). A model with no shipped profile
is steered with the :func:`interim_heads` (every head of the last third of the layers).
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any, Optional, Union

from pasta_lens.fingerprint import identity_mismatch
from pasta_lens.head_profile import HeadProfile
from pasta_lens.plan import Head

REGISTRY_PACKAGE = "pasta_lens.profiles"

INTERIM_HEADS_NOTE = (
    "interim head set (no shipped profile matches this model): every head of the last third of the layers; "
    "steering that many heads follows the emphasis but costs fluency (results/smollm2-135m-instruct.md); "
    "profile the model for a better set")


def list_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped with the package (``load_profile(name)`` loads them)."""
    try:
        root = resources.files(REGISTRY_PACKAGE)
    except ModuleNotFoundError:
        return ()
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json")))


def load_profile(name_or_path: Union[str, os.PathLike]) -> HeadProfile:
    """Load a shipped profile by name (``"smollm2-135m-instruct"``) or any profile file by path.

    Example:
        >>> profile = load_profile("smollm2-135m-instruct")
        >>> with steer(model, profile, em): ...
    """
    text = os.fspath(name_or_path)
    if os.path.sep in text or text.endswith(".json") or os.path.exists(text):
        return HeadProfile.load(text)
    resource = resources.files(REGISTRY_PACKAGE) / f"{text}.json"
    if not resource.is_file():
        raise ValueError(f"No shipped profile named {text!r}; shipped: {', '.join(list_profiles()) or 'none'}. "
                         "Pass a path to a profile file, or make one with `pasta-lens profile`.")
    with resources.as_file(resource) as path:
        return HeadProfile.load(path)


def find_profile(model: Any) -> Optional[tuple[str, HeadProfile]]:
    """The shipped profile made on this model (same shape, same behaviour), with its registry name.

    "This model" is decided by :func:`~pasta_lens.fingerprint.identity_mismatch` (the behavioural fingerprint, else
    the weights hash), so the bf16 model or the HookedTransformer of the same weights finds the same profile.
    Profiles with neither (the imported paper head sets) never match: they cannot prove which weights they belong
    to. Returns None when no shipped profile fits. When several fit (a model's default profile and its variants,
    e.g. ``smollm2-135m-instruct`` and ``smollm2-135m-instruct-metric``), the shortest name wins: variants are
    named by a suffix on the default's name.

    Example:
        >>> name, profile = find_profile(load_model("smollm2-135m-instruct"))
    """
    shape = (int(model.cfg.n_layers), int(model.cfg.n_heads))
    cache: dict[str, Any] = {}  # the model's hash and probe log-probs, computed at most once
    for name in sorted(list_profiles(), key=lambda n: (len(n), n)):  # the default before its -suffixed variants
        profile = load_profile(name)
        if (profile.n_layers, profile.n_heads) != shape:
            continue
        if profile.fingerprint is None and profile.weights_hash is None:
            continue
        if identity_mismatch(profile, model, cache) is None:
            return name, profile
    return None


def interim_heads(model: Any) -> tuple[Head, ...]:
    """All heads of the last third of the layers (layers 20-29 on SmolLM2's 30): the interim default."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    first = n_layers - n_layers // 3
    return tuple((layer, head) for layer in range(first, n_layers) for head in range(n_heads))


def default_profile(model: Any) -> tuple[Any, str]:
    """What is steered when no heads are given: the shipped profile made on this very model, or the interim set.

    Returns ``(spec, note)``: the :class:`~pasta_lens.HeadProfile` found by :func:`find_profile` (same shape and
    behaviour), so its own schedule and per-head alphas apply, or for a model with no shipped profile the
    :func:`interim_heads`; ``note`` says which, in one sentence.
    """
    found = find_profile(model)
    if found is None:
        return interim_heads(model), INTERIM_HEADS_NOTE
    name, profile = found
    schedule = profile.provenance.get("schedule")
    how = (f"{profile.strategy} of the per-task top-{profile.k} over {', '.join(profile.tasks)}"
           if profile.k is not None else f"over {', '.join(profile.tasks)}")
    return profile, (f"shipped profile {name!r}: {len(profile.heads)} heads, {how} ({profile.method})"
                     + (f", chosen with schedule {schedule!r}" if schedule else ""))


def default_heads(model: Any) -> tuple[tuple[Head, ...], str]:
    """The head set used when none is given (:func:`default_profile`'s heads), with the sentence saying whence."""
    spec, note = default_profile(model)
    return tuple(getattr(spec, "heads", spec)), note
