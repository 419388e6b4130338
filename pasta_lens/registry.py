"""The shipped profiles, and which one is a model's default: an explicit index, never a naming rule.

The repository's top-level ``profiles/`` folder installs as the package ``pasta_lens.profiles`` (see
``pyproject.toml``) and is read with ``importlib.resources``, so the same names work from a checkout and from a
wheel. Beside the profile files it holds ``index.json``, which names, for each model, its **default** profile and
every profile shipped for it with a one-line description::

    {"index_version": 1,
     "models": {"smollm2-135m-instruct": {"default": "smollm2-135m-instruct",
                                          "profiles": {"smollm2-135m-instruct": "the default: ...",
                                                       "smollm2-135m-instruct-metric": "..."}},
                "huggyllama/llama-7b": {"default": null, "profiles": {"llama-7b-pasta-top300": "..."}}}}

The index is the registry: :func:`list_profiles` lists its names and :func:`load_profile` loads only them (any
other file by its path). :func:`find_profile` considers only the indexed defaults, so adding a variant, whatever
its name, can never change a user's default; a model whose profiles cannot prove which weights they belong to
(the paper's imported head sets carry no fingerprint) has no default (``null``). Adding a model is one index
entry plus its files.

"This model" is decided by identity, never by name: a default is found for a model when it has the default's
shape and its behaviour (:func:`pasta_lens.fingerprint.identity_mismatch`, computed with every user hook taken
off the model, so an ablation or a patch on the model never changes the answer). A model with no shipped default
is steered with the :func:`interim_profile` (every head of the last third of the layers at alpha 0.1, prompt only),
and :func:`default_profile`
warns that it is, naming the command that makes a profile for that very model (:func:`profile_command`: the
quick preset, minutes on a CPU for a small model).

Example:
    >>> list_profiles()[:2]
    ('gpt-j-6b-pasta-top125', 'gpt-j-6b-pasta-top150')
    >>> name, profile = find_profile(load_model("smollm2-135m-instruct"))     # 'smollm2-135m-instruct'
"""

from __future__ import annotations

import json
import os
import re
import shlex
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pasta_lens.fingerprint import identity_mismatch
from pasta_lens.head_profile import HeadProfile
from pasta_lens.plan import Head

REGISTRY_PACKAGE = "pasta_lens.profiles"
"""The package the shipped profiles install as (the repository's ``profiles/`` folder)."""

INDEX_FILE = "index.json"
INDEX_VERSION = 1

PROFILE_COMMAND = "pasta-lens profile --model NAME --preset quick --out NAME.json"
"""The command that makes a profile for a model with none shipped, as the interim-set warning names it (with the
model's name for ``NAME``: :func:`profile_command`)."""

INTERIM_ALPHA = 0.1
INTERIM_SCHEDULE = "prompt"
"""How the interim set is steered: alpha 0.1 on the prompt only, the best blind choice on validation on both offline
models under the fluency floor; alpha 0.01 on every row followed the emphasis as well but cost a third of the
fluency (``results/no-profile.md``)."""

INTERIM_HEADS_NOTE = (
    f"interim head set (no shipped profile matches this model): every head of the last third of the layers at alpha "
    f"{INTERIM_ALPHA}, prompt only; profile the model for a better set (`{PROFILE_COMMAND}`)"
)


def model_name(model: Any) -> str:
    """The name to pass to ``pasta-lens profile --model`` for a loaded model: the offline name when the model is
    one of :data:`pasta_lens.models.OFFLINE_MODELS` (``"gemma-3-270m"``), else ``cfg.model_name``, else ``NAME``."""
    from pasta_lens.models import OFFLINE_MODELS

    name = str(getattr(getattr(model, "cfg", None), "model_name", "") or "")
    for offline, spec in OFFLINE_MODELS.items():
        if name in (offline, spec["hub_name"], spec["hub_name"].rsplit("/", 1)[-1]):
            return offline
    return name or "NAME"


def profile_command(name: str) -> str:
    """The exact command that makes a quick profile for model ``name`` (:data:`PROFILE_COMMAND`, filled in).

    Example:
        >>> profile_command("gemma-3-270m")
        'pasta-lens profile --model gemma-3-270m --preset quick --out gemma-3-270m.json'
    """
    out = name.rstrip("/").rsplit("/", 1)[-1] + ".json"
    return PROFILE_COMMAND.replace("--model NAME", f"--model {shlex.quote(name)}").replace(
        "--out NAME.json", f"--out {shlex.quote(out)}"
    )


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelEntry:
    """One model's line of the index: its default profile and every profile shipped for it.

    Attributes:
        model: the profiles' ``model_name`` (e.g. ``"smollm2-135m-instruct"``, ``"huggyllama/llama-7b"``).
        default: the profile :func:`find_profile` offers for this model, or None (profiles that carry no identity).
        profiles: ``{profile name: one-line description}``, the default among them.
    """

    model: str
    default: str | None
    profiles: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"An index entry's model must be the profiles' model_name; got {self.model!r}.")
        if not isinstance(self.profiles, Mapping) or not self.profiles:
            raise ValueError(
                f"Index entry {self.model!r}: 'profiles' must map each shipped profile name to a "
                "one-line description; list at least one."
            )
        for name, text in self.profiles.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".json"):
                raise ValueError(
                    f"Index entry {self.model!r}: {name!r} is not a profile name; use the file's "
                    "name without '.json' (letters, digits, '.', '_', '-')."
                )
            if not isinstance(text, str) or not text.strip() or "\n" in text:
                raise ValueError(f"Index entry {self.model!r}: profile {name!r} needs a one-line description.")
        if self.default is not None and self.default not in self.profiles:
            raise ValueError(
                f"Index entry {self.model!r}: its default {self.default!r} is not among its profiles "
                f"{sorted(self.profiles)}; list it there too, or set the default to null."
            )
        object.__setattr__(self, "profiles", dict(self.profiles))


@dataclass(frozen=True)
class Registry:
    """A profiles folder read through its index: what is shipped, for which model, and each model's default.

    ``root`` is the folder (a ``pathlib.Path`` or an ``importlib.resources`` traversable) holding
    ``index.json`` and one ``NAME.json`` per indexed profile. :func:`shipped_registry` reads the package's own;
    ``Registry.read(path)`` reads any other (e.g. a test's).

    Example:
        >>> registry = Registry.read(Path("my_profiles"))
        >>> find_profile(model, registry)
    """

    root: Any
    models: tuple[ModelEntry, ...]

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for entry in self.models:
            for name in entry.profiles:
                if name in seen:
                    raise ValueError(
                        f"Profile {name!r} is indexed under both {seen[name]!r} and {entry.model!r}; "
                        "index each profile once, under the model it was made on."
                    )
                seen[name] = entry.model
        if len({entry.model for entry in self.models}) != len(self.models):
            raise ValueError("The index lists a model twice; give each model one entry.")

    @classmethod
    def from_dict(cls, root: Any, data: Any) -> Registry:
        """The registry of ``root`` from its parsed ``index.json``."""
        if not isinstance(data, Mapping) or set(data) != {"index_version", "models"}:
            raise ValueError(f"{INDEX_FILE} must be an object with exactly 'index_version' and 'models'.")
        if data["index_version"] != INDEX_VERSION:
            raise ValueError(
                f"{INDEX_FILE} has index_version {data['index_version']!r}; this pasta-lens reads "
                f"{INDEX_VERSION}: upgrade pasta-lens."
            )
        if not isinstance(data["models"], Mapping):
            raise ValueError(f"{INDEX_FILE}: 'models' must map each model name to its entry.")
        models = []
        for model, entry in data["models"].items():
            if not isinstance(entry, Mapping) or set(entry) != {"default", "profiles"}:
                raise ValueError(
                    f"{INDEX_FILE}: the entry of {model!r} must be an object with exactly 'default' "
                    "(a profile name or null) and 'profiles' ({name: one-line description})."
                )
            models.append(ModelEntry(model, entry["default"], entry["profiles"]))
        return cls(root, tuple(models))

    @classmethod
    def read(cls, root: Any) -> Registry:
        """Read ``root / index.json`` (``root``: a folder path or a traversable)."""
        if isinstance(root, (str, os.PathLike)):
            root = Path(root)
        index = root / INDEX_FILE
        if not index.is_file():
            raise ValueError(
                f"No {INDEX_FILE} in {root}: a profiles folder lists its models, their defaults and "
                "their profiles there (docs/registry.md)."
            )
        try:
            data = json.loads(index.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{index} is not valid JSON ({err}).") from None
        try:
            return cls.from_dict(root, data)
        except ValueError as err:
            raise ValueError(f"{index}: {err}") from None

    def names(self) -> tuple[str, ...]:
        """Every indexed profile name, sorted."""
        return tuple(sorted(name for entry in self.models for name in entry.profiles))

    def entry(self, name: str) -> ModelEntry:
        """The index entry that lists profile ``name``.

        Raises:
            ValueError: ``name`` is not indexed (the message lists the names that are).
        """
        for entry in self.models:
            if name in entry.profiles:
                return entry
        raise ValueError(
            f"No shipped profile named {name!r}; shipped: {', '.join(self.names()) or 'none'}. "
            "Pass a path to a profile file, or make one with `pasta-lens profile`."
        )

    def load(self, name: str) -> HeadProfile:
        """Load the indexed profile ``name`` from ``root / NAME.json``."""
        self.entry(name)
        resource = self.root / f"{name}.json"
        if not resource.is_file():
            raise ValueError(
                f"{INDEX_FILE} lists {name!r} but {self.root} has no {name}.json: add the file or "
                "remove the name from the index."
            )
        with resources.as_file(resource) as path:
            return HeadProfile.load(path)


def shipped_registry() -> Registry:
    """The registry of the profiles installed with pasta-lens (read afresh on each call; a few milliseconds)."""
    return Registry.read(resources.files(REGISTRY_PACKAGE))


def list_profiles(registry: Registry | None = None) -> tuple[str, ...]:
    """Names of the shipped profiles (``load_profile(name)`` loads them), sorted.

    Example:
        >>> "smollm2-135m-instruct" in list_profiles()
        True
    """
    return (shipped_registry() if registry is None else registry).names()


def load_profile(name_or_path: str | os.PathLike, registry: Registry | None = None) -> HeadProfile:
    """Load a shipped profile by name (``"smollm2-135m-instruct"``) or any profile file by path.

    Example:
        >>> profile = load_profile("smollm2-135m-instruct")
        >>> with steer(model, profile, em): ...
    """
    text = os.fspath(name_or_path)
    if os.path.sep in text or text.endswith(".json") or os.path.exists(text):
        return HeadProfile.load(text)
    return (shipped_registry() if registry is None else registry).load(text)


def find_profile(model: Any, registry: Registry | None = None) -> tuple[str, HeadProfile] | None:
    """The indexed default profile made on this model (same shape, same behaviour), with its name; else None.

    Only the index's defaults are candidates, in index order; a default must carry an identity (a fingerprint or
    a weights hash) to be found. Identity is :func:`pasta_lens.fingerprint.identity_mismatch`, computed with the
    model's user hooks taken off, so the bf16 model, the HookedTransformer of the same weights, or the model inside
    ``with model.hooks(...)`` all find the same default.

    Example:
        >>> name, profile = find_profile(load_model("smollm2-135m-instruct"))
    """
    registry = shipped_registry() if registry is None else registry
    shape = (int(model.cfg.n_layers), int(model.cfg.n_heads))
    cache: dict[str, Any] = {}  # the model's probe log-probs and hash, computed at most once
    for entry in registry.models:
        if entry.default is None:
            continue
        profile = registry.load(entry.default)
        if (profile.n_layers, profile.n_heads) != shape:
            continue
        if profile.fingerprint is None and profile.weights_hash is None:
            continue  # it cannot prove which weights it belongs to
        if identity_mismatch(profile, model, cache) is None:
            return entry.default, profile
    return None


def interim_heads(model: Any) -> tuple[Head, ...]:
    """All heads of the last third of the layers (layers 20-29 on SmolLM2's 30): the interim default."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    first = n_layers - n_layers // 3
    return tuple((layer, head) for layer in range(first, n_layers) for head in range(n_heads))


def interim_profile(model: Any) -> HeadProfile:
    """The interim set as a profile: :func:`interim_heads` at :data:`INTERIM_ALPHA` on the
    :data:`INTERIM_SCHEDULE`, so that ``generate``, ``steer`` and ``evaluate`` steer it like any profile.

    It carries no identity (no fingerprint): it fits every model of its shape, which is the point.

    Example:
        >>> interim_profile(model).alpha, interim_profile(model).provenance["schedule"]
        (0.1, 'prompt')
    """
    return HeadProfile(
        model_name=model_name(model),
        n_layers=int(model.cfg.n_layers),
        n_heads=int(model.cfg.n_heads),
        heads=interim_heads(model),
        method="interim head set",
        alpha=INTERIM_ALPHA,
        date="",
        command=None,
        provenance={"schedule": INTERIM_SCHEDULE, "chosen_in": "results/no-profile.md"},
    )


def default_profile(model: Any, registry: Registry | None = None, name: str | None = None) -> tuple[Any, str]:
    """What is steered when no heads are given: the shipped default made on this very model, or the interim set.

    Returns ``(spec, note)``: the :class:`~pasta_lens.HeadProfile` found by :func:`find_profile`, so its own
    schedule and per-head alphas apply, or for a model with no shipped default the :func:`interim_profile`, with a
    ``UserWarning`` that says there is no profile for this model and names the command that makes one
    (:func:`profile_command` of ``name``, default :func:`model_name`); ``note`` says which, in one sentence.

    Example:
        >>> spec, note = default_profile(model)
        >>> generate(model, text, spec)       # what generate(model, text) does
    """
    found = find_profile(model, registry)
    if found is None:
        command = profile_command(name or model_name(model))
        out = command.rsplit(" ", 1)[-1]
        warnings.warn(
            f"There is no profile for this model (none shipped matches it), so the interim head set (every "
            f"head of the last third of the layers, alpha {INTERIM_ALPHA}, prompt only) is steered; make a quick "
            f"profile for it with `{command}` and pass load_profile({out!r}) as the heads.",
            UserWarning,
            stacklevel=2,
        )
        return interim_profile(model), INTERIM_HEADS_NOTE
    name, profile = found
    schedule = profile.provenance.get("schedule")
    how = (
        f"{profile.strategy} of the per-task top-{profile.k} over {', '.join(profile.tasks)}"
        if profile.k is not None
        else f"over {', '.join(profile.tasks)}"
    )
    return profile, (
        f"shipped profile {name!r}: {len(profile.heads)} heads, {how} ({profile.method})"
        + (f", chosen with schedule {schedule!r}" if schedule else "")
    )


def default_heads(model: Any, registry: Registry | None = None) -> tuple[tuple[Head, ...], str]:
    """The head set used when none is given (:func:`default_profile`'s heads), with the sentence saying whence.

    Example:
        >>> heads, why = default_heads(model)
    """
    spec, note = default_profile(model, registry)
    return tuple(getattr(spec, "heads", spec)), note
