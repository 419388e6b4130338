"""The rows of a results folder: one JSON object per (configuration, example) in ``examples.jsonl``.

A *configuration* is everything that decides a row's outputs: the model, the task and its data kind, the
method, the split and prompt variant, the rendering (marking, few-shot), the steering plan (heads, per-head
alphas, schedule, scaled side, hook point), the generation length, the **engine** that generates (``"hf"``: HF's
loop on a twin of the bridge's weights, ``"hooks"``: TransformerLens' loop with the steering hooks, ``"forward"``:
choice queries only, scored by teacher forcing) and :data:`ROWS_VERSION` (what a row stores). Its digest,
:func:`config_key`, is the row's ``config``; the row is reused by a later run only under the same key, so a
resumed run never mixes engines, plans or row formats within one configuration.

Rules for the file:

* **One writer.** Every writer of a results folder holds its lock (:func:`results_lock`, ``FOLDER/.lock``):
  a second run on the same folder is refused with an error naming the running process and its command.
* **Append as you go.** Each finished row is appended at once (:func:`append_row`), so an interrupted run
  resumes where it stopped; a last line cut by the interruption is dropped with a warning and the file rewritten
  atomically without it (:func:`read_rows`). Any other malformed line is an error naming the file and the line.
* **One row per (configuration, example).** A reader that finds duplicates (e.g. a file two runs appended to
  before locks existed) keeps the last of each and warns with the counts (:func:`dedup_rows`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pasta_lens.distributed import World, broadcast
from pasta_lens.io import LockedError, atomic_write_text, folder_lock
from pasta_lens.plan import SteeringPlan

ROWS_VERSION = 2
"""What a row stores. 2: choice queries keep per-token log-probs (``outputs["KEY.tokens"]``) beside the reduced
values, and rows record their ``engine``. Part of :func:`config_key`: rows of another version are not reused."""

ROWS_FILE = "examples.jsonl"
ROW_KEYS = ("config", "uid", "outputs")
"""Keys every row must have."""


def plan_record(plan: SteeringPlan | None) -> dict[str, Any] | None:
    """A JSON-ready, order-free record of everything a plan steers (None for no plan).

    Example:
        >>> plan_record(plan_from_spec({1: [0]}, 0.1))
        {'alphas': [[1, 0, 0.1]], 'schedule': 'all', 'scale_position': 'exclude', 'where': 'pattern'}
    """
    if plan is None:
        return None
    return {
        "alphas": [[h[0], h[1], float(plan.alphas[h])] for h in plan.heads],
        "schedule": str(plan.schedule),
        "scale_position": plan.scale_position,
        "where": plan.where,
    }


def config_key(fields: dict[str, Any]) -> str:
    """A 16-hex digest of a configuration's fields (any JSON-ready mapping), with :data:`ROWS_VERSION`.

    Example:
        >>> config_key({"task": "json", "engine": "hf"}) != config_key({"task": "json", "engine": "hooks"})
        True
    """
    payload = json.dumps({**fields, "rows_version": ROWS_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def parse_row(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """One line of ``path`` as a row, or ``ValueError`` naming the file and the line number."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}, line {number}: not a JSON row ({err}). Fix or delete that line (or the file, "
            "to recompute everything); evaluate writes one JSON object per line."
        ) from None
    if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(
            f"{path}, line {number}: not an evaluation row (needs keys {list(ROW_KEYS)}; got "
            f"{keys}). Delete that line (or the file, to recompute everything)."
        )
    return row


def dedup_rows(rows: Sequence[dict[str, Any]], where: str = "rows") -> list[dict[str, Any]]:
    """One row per ``(config, uid)``: the last of each, in first-seen order; warns with the counts if any was
    dropped (and how many of the dropped ones disagreed with the kept one in their outputs).

    Example:
        >>> len(dedup_rows([{"config": "c", "uid": "u", "outputs": {}}] * 2))   # warns: 1 duplicate
        1
    """
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        last[(row["config"], row["uid"])] = row
    if len(last) == len(rows):
        return list(rows)
    differ = sum(1 for row in rows if row["outputs"] != last[(row["config"], row["uid"])]["outputs"])
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        counts[(row["config"], row["uid"])] = counts.get((row["config"], row["uid"]), 0) + 1
    doubled = sum(1 for c in counts.values() if c > 1)
    warnings.warn(
        f"{where}: {len(rows)} rows for {len(last)} distinct (configuration, example) pairs; dropped "
        f"{len(rows) - len(last)} duplicate rows of {doubled} pairs, keeping the last of each "
        f"({differ} of the dropped rows had other outputs than the kept one). Two runs probably wrote "
        "this folder at once.",
        stacklevel=3,
    )
    return list(last.values())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``examples.jsonl`` (none if it does not exist), one per (configuration, example).

    A last line cut by an interruption (no newline, not a whole row) is dropped with a warning and the file
    rewritten atomically without it; duplicates are dropped with a warning (:func:`dedup_rows`). Any other bad
    line is a ``ValueError`` naming the file and the line.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    cut = lines.pop() if lines else b""  # what follows the last newline: b"" for a complete file
    rows = [parse_row(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if cut.strip():
        try:
            rows.append(parse_row(path, len(lines) + 1, cut))  # complete JSON, only the newline was lost
        except ValueError:
            warnings.warn(
                f"{path}: dropped its last line {len(lines) + 1}, cut by an interruption (no newline, "
                "not a whole row); that example will be recomputed.",
                stacklevel=3,
            )
        write_rows(path, rows)
    return dedup_rows(rows, str(path))


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace ``path`` with ``rows`` atomically (one JSON object per line)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one finished row (a whole line, flushed on close)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


@contextmanager
def results_lock(folder: Path | None, world: World, what: str = "the evaluation folder") -> Iterator[None]:
    """Hold ``FOLDER/.lock`` (:func:`pasta_lens.io.folder_lock`) on the writing rank while the body runs.

    Under ``torchrun`` only rank 0 writes, so only rank 0 locks; its success or refusal is broadcast, so every
    rank raises the same :class:`~pasta_lens.io.LockedError` (none is left waiting in a collective). ``folder``
    None: nothing is written, nothing is locked.
    """
    if folder is None:
        yield
        return
    if not world.is_main:
        refused = broadcast(None, world)
        if refused:
            raise LockedError(refused)
        yield
        return
    with ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(folder, what=what))
        except LockedError as err:
            broadcast(str(err), world)
            raise
        broadcast(None, world)
        yield
