"""``HeadProfile``: a selected head set with everything needed to trust and reproduce it, as one JSON file.

A profile is what profiling produces and what steering consumes: the heads to steer (``profile.heads``, sorted
``(layer, head)`` pairs) plus the evidence behind them (per-task per-head scores) and the provenance (model name,
shape, the model's identity, tasks, method, alpha, k, strategy, examples per task, seed, library version, date and
the command that made it). :meth:`HeadProfile.save` writes it atomically (temporary file + ``os.replace``), so an
interrupted write never leaves half a profile behind; :meth:`HeadProfile.load` checks every field and names the
file and the field in its errors (an official PASTA head config, ``{"layer": [head, ...]}``, is pointed to
:meth:`HeadProfile.from_pasta_json`, which imports it). The file's layout and those checks are
:mod:`pasta_lens.profile_json`'s; this module holds the dataclass, its validation and its use.

Refusing the wrong model: ``profile.validate_for(model)`` checks the shape against ``model.cfg`` and the weights
with :func:`pasta_lens.fingerprint.identity_mismatch` (the behavioural fingerprint, so the same weights are
recognised in fp32 or bf16, on either backend, processed or not, whatever hooks are on the model; the exact weights
hash for schema-1 files; nothing for imported head sets, which carry neither). A head set found on one model means
nothing on another, so a mismatch is a ``ValueError``; ``allow_transfer=True`` waives the weights check (never the
shape) for the paper's transfer across fine-tunes of one base model (LLaMA -> Vicuna).
:func:`pasta_lens.plan.resolve_plan` calls it before anything is steered.

The profiles shipped with the package, and which one is a model's default, are :mod:`pasta_lens.registry`'s job.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.fingerprint import ModelFingerprint, identity_mismatch
from pasta_lens.head_specs import Head, check_alpha, normalize_heads, validate_heads
from pasta_lens.io import atomic_write_text
from pasta_lens.profile_json import (
    FIELD_ORDER,
    SCHEMA_VERSION,
    format_profile,
    profile_fields,
    read_pasta_head_config,
)
from pasta_lens.profile_json import READABLE_SCHEMAS as READABLE_SCHEMAS  # re-exported: the layout's versions

STRATEGIES = ("intersection", "union", "task_specific")

ScoreTable = tuple[tuple[float, ...], ...]
"""A ``[n_layers][n_heads]`` table of per-head scores, as :attr:`HeadProfile.scores` holds it."""


def score_table(table: Tensor | Sequence[Sequence[float]]) -> ScoreTable:
    """``table`` (a tensor or nested sequences, layers x heads) as the nested tuples of floats a profile holds.

    Example:
        >>> score_table(torch.tensor([[0.5, -1.0], [0.0, 2.0]]))
        ((0.5, -1.0), (0.0, 2.0))
    """
    return tuple(tuple(float(x) for x in row) for row in (table.tolist() if isinstance(table, Tensor) else table))


def library_version() -> str:
    """The installed pasta-lens version (``"unknown"`` when run from a tree that was never installed)."""
    try:
        return metadata.version("pasta-lens")
    except metadata.PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class HeadProfile:
    """A profiled head set for one model, with its scores and provenance.

    Attributes:
        model_name: the model the profile was made on (e.g. ``"smollm2-135m-instruct"``).
        n_layers, n_heads: the model's shape (query heads per layer).
        heads: the selected heads, sorted ``(layer, head)`` pairs: what ``steer(model, profile, ...)`` steers.
        weights_hash: :func:`~pasta_lens.fingerprint.weights_hash` of the model, or None when unknown (imported
            profiles).
        fingerprint: the model's behavioural :class:`~pasta_lens.fingerprint.ModelFingerprint` (schema 2), or
            None (imported profiles, schema-1 files).
        tasks: the tasks profiled.
        method: ``"attribution"``, ``"exact"``, ``"hybrid"``, or where the heads came from (``"pasta-official"``).
        alpha: the steering strength used while profiling.
        k: per-task top-k used for the selection (None if unknown).
        strategy: ``"intersection"``, ``"union"``, ``"task_specific"`` or None.
        n_examples: examples profiled per task.
        seed: seed used to draw the examples.
        library_version: pasta-lens version that wrote the profile.
        date: ISO-8601 UTC time of creation.
        command: the command line that made it, to repeat it.
        scores: per task, the ``[n_layers][n_heads]`` table of mean objective changes (empty if unknown).
        provenance: free-form facts about the origin (source repository, commit, path, license, wall time...).
        schema_version: JSON layout version.
        head_alphas: per-head steering strengths ``{(layer, head): alpha}`` (each in [``ALPHA_MIN``, 1]), covering
            exactly ``heads``; empty (default) for a profile with one alpha. ``steer(model, profile, em)`` and
            ``pasta_hooks(profile, em, model=model)`` use them when no ``alpha`` is passed (an explicit alpha
            wins; see :mod:`pasta_lens.plan`). Made by ``pasta-lens profile --method learned``
            (:mod:`pasta_lens.profiling.learned`). Written to JSON as ``[[layer, head, alpha], ...]`` and only
            when non-empty, so profiles without it are unchanged (and older pasta-lens versions refuse a file
            with it by name, never steer it at the wrong strengths).
    """

    model_name: str
    n_layers: int
    n_heads: int
    heads: tuple[Head, ...]
    weights_hash: str | None = None
    tasks: tuple[str, ...] = ()
    method: str = "unknown"
    alpha: float = 0.01
    k: int | None = None
    strategy: str | None = None
    n_examples: Mapping[str, int] = field(default_factory=dict)
    seed: int | None = None
    library_version: str = field(default_factory=library_version)
    date: str = field(default_factory=_now)
    command: str | None = None
    scores: Mapping[str, ScoreTable] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    fingerprint: ModelFingerprint | None = None
    head_alphas: Mapping[Head, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError("HeadProfile.model_name must be a non-empty string naming the profiled model.")
        for name in ("n_layers", "n_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HeadProfile.{name} must be a positive integer; got {value!r}.")
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"HeadProfile schema version {self.schema_version} is not supported by this "
                f"pasta-lens (schema {SCHEMA_VERSION}); upgrade pasta-lens or re-profile."
            )
        try:
            heads = normalize_heads(self.heads)
        except ValueError as err:
            raise ValueError(
                f"HeadProfile.heads: {err} An empty selection usually means k is too small for "
                "an intersection: choose a larger k."
            ) from None
        validate_heads(heads, self.n_layers, self.n_heads)
        set_("heads", heads)
        try:
            set_("alpha", check_alpha(self.alpha))
        except ValueError as err:
            raise ValueError(f"HeadProfile.alpha: {err}") from None
        if self.k is not None and (isinstance(self.k, bool) or int(self.k) != self.k or self.k < 1):
            raise ValueError(f"HeadProfile.k must be a positive integer or None; got {self.k!r}.")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValueError(f"HeadProfile.strategy must be one of {STRATEGIES} or None; got {self.strategy!r}.")
        set_("tasks", tuple(str(t) for t in self.tasks))
        set_("n_examples", {str(t): int(n) for t, n in dict(self.n_examples).items()})
        tables: dict[str, ScoreTable] = {}
        for task, table in dict(self.scores).items():
            rows = score_table(table)
            if len(rows) != self.n_layers or any(len(r) != self.n_heads for r in rows):
                raise ValueError(
                    f"HeadProfile.scores[{task!r}] must be a {self.n_layers} x {self.n_heads} "
                    "table (layers x heads) matching n_layers and n_heads."
                )
            tables[str(task)] = rows
        unknown = set(tables) - set(self.tasks)
        if unknown:
            raise ValueError(
                f"HeadProfile.scores has tasks {sorted(unknown)} missing from tasks={self.tasks}; "
                "list every scored task in tasks."
            )
        set_("scores", tables)
        set_("provenance", dict(self.provenance))
        set_("fingerprint", _coerce_fingerprint(self.fingerprint))
        set_("head_alphas", _check_head_alphas(self.head_alphas, heads))

    # ----------------------------------------------------------------------------------------------- use
    def score_table(self, task: str) -> Float[Tensor, "layer head"]:
        """The ``[n_layers, n_heads]`` score tensor of one task."""
        if task not in self.scores:
            raise ValueError(f"This profile has no scores for task {task!r}; it has {sorted(self.scores)}.")
        return torch.tensor(self.scores[task], dtype=torch.float32)

    def validate_for(self, model: Any, allow_transfer: bool = False) -> None:
        """Raise ``ValueError`` unless this profile was made for ``model``.

        The shape (``cfg.n_layers``, ``cfg.n_heads``) must always match. The weights must match too
        (:func:`~pasta_lens.fingerprint.identity_mismatch`), unless ``allow_transfer=True`` (e.g. a LLaMA-7B profile
        on Vicuna-7B) or the profile carries no identity (imported).

        Example:
            >>> load_profile("smollm2-135m-instruct").validate_for(model)   # passes, or raises naming the fix
        """
        n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        if (n_layers, n_heads) != (self.n_layers, self.n_heads):
            raise ValueError(
                f"Profile {self.model_name!r} is for a model with {self.n_layers} layers x "
                f"{self.n_heads} heads, but this model has {n_layers} x {n_heads}: load the "
                "profile made for this model, or profile it with `pasta-lens profile`."
            )
        if allow_transfer:
            return
        mismatch = identity_mismatch(self, model)
        if mismatch is not None:
            raise ValueError(
                f"Profile {self.model_name!r} was made on other weights ({mismatch}). If this model "
                f"is a fine-tune of {self.model_name!r} and you want to transfer the heads (as the "
                "paper does for LLaMA -> Vicuna), pass allow_transfer=True; otherwise profile this "
                "model."
            )

    # ------------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (heads as ``[layer, head]`` lists)."""
        d = asdict(self)
        d["heads"] = [list(h) for h in self.heads]
        d["tasks"] = list(self.tasks)
        d["scores"] = {t: [list(r) for r in rows] for t, rows in self.scores.items()}
        d["fingerprint"] = self.fingerprint.to_dict() if self.fingerprint is not None else None
        d["head_alphas"] = [
            [layer, head, self.head_alphas[(layer, head)]]
            for layer, head in self.heads
            if (layer, head) in self.head_alphas
        ]
        return {key: d[key] for key in FIELD_ORDER if key != "head_alphas" or self.head_alphas}

    @classmethod
    def from_dict(cls, d: Any) -> HeadProfile:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently).

        Raises:
            ValueError: not a profile object, an official PASTA head config (import it with
                :meth:`from_pasta_json`), a missing or ill-typed field, or an unsupported schema version.
        """
        d = profile_fields(d, known_fields=cls.__dataclass_fields__)
        try:
            return cls(**d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Invalid profile: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON, atomically (temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = format_profile(self.to_dict())
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeadProfile:
        """Read a profile written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"No profile at {path}: give the path of a file written by HeadProfile.save, "
                "or a shipped profile's name to pasta_lens.load_profile."
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); was it written by HeadProfile.save?") from None
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def from_pasta_json(
        cls,
        path: str | os.PathLike,
        *,
        model_name: str,
        n_layers: int,
        n_heads: int,
        k: int | None = None,
        tasks: Sequence[str] = (),
        strategy: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        n_examples: Mapping[str, int] | None = None,
    ) -> HeadProfile:
        """Import an official PASTA head config (``{"layer": [head, ...]}``, as in QingruZhang/PASTA's
        ``config/head_config``).

        The file holds only the heads, so the shape is given here and the weights hash stays None.

        Example:
            >>> HeadProfile.from_pasta_json("top300_json-bio-cf-pron_train1000.json", model_name="llama-7b",
            ...                             n_layers=32, n_heads=32, k=300, strategy="intersection")
        """
        path = Path(path)
        heads = read_pasta_head_config(path)
        prov = {"source_file": path.name}
        prov.update(provenance or {})
        return cls(
            model_name=model_name,
            n_layers=n_layers,
            n_heads=n_heads,
            heads=heads,
            tasks=tuple(tasks),
            method="pasta-official",
            k=k,
            strategy=strategy,
            n_examples=dict(n_examples or {}),
            provenance=prov,
            command=None,
        )


def _check_head_alphas(value: Any, heads: tuple[Head, ...]) -> dict[Head, float]:
    """``head_alphas`` as ``{(layer, head): float}``: empty, or exactly the profile's heads, each alpha checked."""
    if not isinstance(value, Mapping):
        raise ValueError(
            f"HeadProfile.head_alphas must be a mapping {{(layer, head): alpha}}; got {type(value).__name__}."
        )
    if not value:
        return {}
    try:
        given = {(int(k[0]), int(k[1])): v for k, v in value.items()}
    except (TypeError, ValueError, IndexError):
        raise ValueError("HeadProfile.head_alphas keys must be (layer, head) pairs of integers.") from None
    missing, extra = sorted(set(heads) - set(given)), sorted(set(given) - set(heads))
    if missing or extra:
        raise ValueError(
            f"HeadProfile.head_alphas must give an alpha to exactly the profile's heads (or be "
            f"empty); missing {missing}, not in heads {extra}."
        )
    out = {}
    for head in heads:
        try:
            out[head] = check_alpha(given[head], head)
        except ValueError as err:
            raise ValueError(f"HeadProfile.head_alphas: {err}") from None
    return out


def _coerce_fingerprint(value: Any) -> ModelFingerprint | None:
    if value is None or isinstance(value, ModelFingerprint):
        return value
    if isinstance(value, Mapping):
        return ModelFingerprint.from_dict(value)
    raise ValueError(f"HeadProfile.fingerprint must be a ModelFingerprint, its dict, or None; got {type(value)}.")
