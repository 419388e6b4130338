"""The JSON file of a :class:`~pasta_lens.head_profile.HeadProfile`: its layout, the checks on reading, PASTA configs.

Writing: :func:`format_profile` lays out a profile's dict (``HeadProfile.to_dict``, keys in :data:`FIELD_ORDER`)
readably, one line per field, per head and per score-table row. Reading: :func:`profile_fields` checks a parsed
file before any value reaches the dataclass (a JSON object, written by ``HeadProfile.save``: its
``schema_version`` one of :data:`READABLE_SCHEMAS`; no unknown field, the required ones present, each of the right
JSON type), upgrades an older layout (schema 1 has no fingerprint) and returns the constructor's arguments. An
official PASTA head config (``{"layer": [head, ...]}``) is recognised and pointed to
``HeadProfile.from_pasta_json``, which reads its heads with :func:`read_pasta_head_config`.

The values themselves (heads in range, alphas in (0, 1], score tables of the model's shape) are checked by
``HeadProfile.__post_init__``, whatever made the profile; :mod:`pasta_lens.head_profile` re-exports the names here.

Example:
    >>> profile_fields({"schema_version": 2, "model_name": "m", "n_layers": 2, "n_heads": 4, "heads": [[1, 3]]},
    ...                known_fields=HeadProfile.__dataclass_fields__)["heads"]
    ((1, 3),)
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pasta_lens.head_specs import Head

SCHEMA_VERSION = 2
"""Version of the JSON layout written by :meth:`HeadProfile.save`; bumped on incompatible changes."""

READABLE_SCHEMAS = (1, 2)
"""Layouts :meth:`HeadProfile.from_dict` reads: 1 (no fingerprint; identity by weights hash only) and 2."""

FIELD_ORDER = (
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
)
"""The order of the fields in a profile's JSON file (``head_alphas`` only when the profile has them)."""


def profile_fields(d: Any, known_fields: Collection[str]) -> dict[str, Any]:
    """The ``HeadProfile`` constructor's arguments from a parsed profile file, its layout checked.

    Args:
        d: the parsed JSON.
        known_fields: the dataclass's field names; any other key is an error (a typo must not pass silently).

    Raises:
        ValueError: not a profile object, an official PASTA head config (import it with
            ``HeadProfile.from_pasta_json``), a missing or ill-typed field, or an unsupported schema version.
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
    known = set(known_fields)
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
    return d


def read_pasta_head_config(path: Path) -> tuple[Head, ...]:
    """The heads of an official PASTA head config (``{"layer": [head, ...]}``, as in QingruZhang/PASTA's
    ``config/head_config``), in the file's order.

    Raises:
        ValueError: not JSON, not such an object, or a layer key or head id that is not an integer.
    """
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
    return heads


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


def format_profile(d: Mapping[str, Any]) -> str:
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


def _upgrade_schema(d: Mapping[str, Any]) -> dict[str, Any]:
    """A profile dict in the current layout; older readable layouts are upgraded (schema 1: no fingerprint)."""
    d = dict(d)  # profile_fields has checked that its schema_version is readable
    if d["schema_version"] == 1:
        if "fingerprint" in d:
            raise ValueError("A schema-1 profile has no fingerprint field; set schema_version to 2.")
        d["schema_version"] = SCHEMA_VERSION
    return d
