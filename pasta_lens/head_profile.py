"""``HeadProfile``: a selected head set with everything needed to trust and reproduce it, as one JSON file.

A profile is what profiling produces and what steering consumes: the heads to steer (``profile.heads``, sorted
``(layer, head)`` pairs) plus the evidence behind them (per-task per-head scores) and the provenance (model name,
shape, the model's identity, tasks, method, alpha, k, strategy, examples per task, seed, library version, date and
the command that made it). :meth:`HeadProfile.save` writes it atomically (temporary file + ``os.replace``), so an
interrupted write never leaves half a profile behind; :meth:`HeadProfile.load` checks every field and names the
file and the field in its errors (an official PASTA head config, ``{"layer": [head, ...]}``, is pointed to
:meth:`HeadProfile.from_pasta_json`, which imports it).

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

SCHEMA_VERSION = 2
"""Version of the JSON layout written by :meth:`HeadProfile.save`; bumped on incompatible changes."""

READABLE_SCHEMAS = (1, 2)
"""Layouts :meth:`HeadProfile.from_dict` reads: 1 (no fingerprint; identity by weights hash only) and 2."""

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
        order = [
            "schema_version",
            "model_name",
            "n_layers",
            "n_heads",
            "weights_hash",
            "fingerprint",
            "tasks",
            "method",
            "alpha",
            "k",
            "strategy",
            "n_examples",
            "seed",
            "library_version",
            "date",
            "command",
            "provenance",
            "heads",
            "head_alphas",
            "scores",
        ]
        return {key: d[key] for key in order if key != "head_alphas" or self.head_alphas}

    @classmethod
    def from_dict(cls, d: Any) -> HeadProfile:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently).

        Raises:
            ValueError: not a profile object, an official PASTA head config (import it with
                :meth:`from_pasta_json`), a missing or ill-typed field, or an unsupported schema version.
        """
        if not isinstance(d, Mapping):
            raise ValueError(
                f"A profile is a JSON object with the fields HeadProfile.save writes; got a "
                f"{_json_type(d)} at the top level. Load a file written by HeadProfile.save, or "
                "make one with `pasta-lens profile`."
            )
        d = dict(d)
        if _looks_like_pasta_config(d):
            raise ValueError(
                'This is an official PASTA head config ({"layer": [head, ...]}), not a pasta-lens '
                "profile: import it with HeadProfile.from_pasta_json(path, model_name=..., "
                "n_layers=..., n_heads=...)."
            )
        if "schema_version" not in d:
            raise ValueError(
                "The profile has no 'schema_version' field, so it was not written by "
                "HeadProfile.save; make profiles with `pasta-lens profile` (official PASTA head "
                "configs are imported with HeadProfile.from_pasta_json)."
            )
        version = d["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"The profile's 'schema_version' must be an integer; got {version!r}.")
        if version not in READABLE_SCHEMAS:
            fix = "upgrade pasta-lens" if version > SCHEMA_VERSION else "re-profile the model"
            raise ValueError(
                f"Profile schema version {version} is not supported (this pasta-lens reads {READABLE_SCHEMAS}); {fix}."
            )
        d = _upgrade_schema(d)
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"Unknown profile fields {sorted(extra)}; known fields: {sorted(known)}.")
        for name in ("model_name", "n_layers", "n_heads", "heads"):
            if name not in d:
                raise ValueError(f"The profile is missing the required field {name!r}.")
        heads = d["heads"]
        if not isinstance(heads, list) or not all(isinstance(h, list) and len(h) == 2 for h in heads):
            raise ValueError(
                f"The profile's 'heads' must be a list of [layer, head] pairs; got {_json_type(heads)} {heads!r:.60}."
            )
        for name, kind, types in (
            ("tasks", "a list of task names", list),
            ("n_examples", "an object", dict),
            ("scores", "an object of tables", dict),
            ("provenance", "an object", dict),
        ):
            if name in d and not isinstance(d[name], types):
                raise ValueError(f"The profile's {name!r} must be {kind}; got {_json_type(d[name])}.")
        d["heads"] = tuple(tuple(h) for h in heads)
        d["tasks"] = tuple(d.get("tasks", ()))
        if "head_alphas" in d:
            rows = d["head_alphas"]
            if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 3 for r in rows):
                raise ValueError(
                    f"The profile's 'head_alphas' must be a list of [layer, head, alpha] triples; got "
                    f"{_json_type(rows)} {rows!r:.60}."
                )
            try:
                d["head_alphas"] = {(int(layer), int(head)): float(a) for layer, head, a in rows}
            except (TypeError, ValueError):
                raise ValueError(
                    "The profile's 'head_alphas' must hold [layer, head, alpha] with integer layer "
                    "and head and a numeric alpha."
                ) from None
            if len(d["head_alphas"]) != len(rows):
                raise ValueError("The profile's 'head_alphas' lists a head twice; give each head once.")
        try:
            return cls(**d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Invalid profile: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON, atomically (temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _format_json(self.to_dict())
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
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}).") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(
                f'{path} is not a PASTA head config: expected {{"layer": [head, ...]}}, e.g. '
                '{"16": [16, 21], "12": [23, 26, 0]}.'
            )
        try:
            heads = tuple((int(layer), int(h)) for layer, hs in data.items() for h in hs)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: layer keys and head ids must be integers.") from None
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


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    for kind, name in (
        (bool, "boolean"),
        (str, "string"),
        (int, "number"),
        (float, "number"),
        (list, "list"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _looks_like_pasta_config(d: Mapping[str, Any]) -> bool:
    """``{"16": [16, 21], "12": [23, 26, 0]}``: layer numbers as keys, lists of head ids as values."""
    return bool(d) and all(isinstance(k, str) and k.strip().isdigit() and isinstance(v, list) for k, v in d.items())


def _format_json(d: Mapping[str, Any]) -> str:
    """Readable JSON: one line per field, per head pair and per score-table row."""
    lines = []
    for key, value in d.items():
        if key in ("heads", "head_alphas"):
            body = ",\n  ".join(json.dumps(h) for h in value)
            text = f"[\n  {body}\n ]" if value else "[]"
        elif key == "scores":
            tasks = []
            for task, rows in value.items():
                body = ",\n   ".join(json.dumps(r) for r in rows)
                tasks.append(f"  {json.dumps(task)}: [\n   {body}\n  ]")
            text = "{\n" + ",\n".join(tasks) + "\n }" if tasks else "{}"
        else:
            text = json.dumps(value)
        lines.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


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


def _upgrade_schema(d: Mapping[str, Any]) -> dict[str, Any]:
    """A profile dict in the current layout; older readable layouts are upgraded (schema 1: no fingerprint)."""
    d = dict(d)  # from_dict has checked that its schema_version is readable
    if d["schema_version"] == 1:
        if "fingerprint" in d:
            raise ValueError("A schema-1 profile has no fingerprint field; set schema_version to 2.")
        d["schema_version"] = SCHEMA_VERSION
    return d
