"""Resumable profiling: per-example results on disk, keyed by what the example is, refusing other run settings.

:func:`~pasta_lens.profiling.profile_heads` with ``checkpoint=path`` stores each example's attribution and exact
results here as soon as they are computed (the whole state rewritten atomically, :func:`pasta_lens.io.atomic_write`),
so an interrupted run restarted with the same arguments skips what is done and returns an identical result.

What a stored row depends on decides whether it may be reused:

- the run (the **fingerprint**: checkpoint format, alpha, the model's shape and weights hash): another value
  refuses the whole file. ``heads_per_batch`` is not part of it: it only decides how many steered copies share a
  forward pass, never a value, so a resume with another batch size reuses the rows.
- the example (the **digest**): its tokens, key mask, attention mask and its objective. A
  :func:`~pasta_lens.objectives.target_logprob` objective carries a ``key`` naming its target and contrast ids;
  any other objective is identified by its values on fixed random logits. A changed prompt, target or contrast
  is therefore a new example, computed afresh, never a stale row.
- the estimator: rows are kept per phase (``attribution`` / ``exact``, exact rows also keyed by the heads scored),
  so switching ``method`` reuses only rows of the estimator it needs, which are the same numbers.

A run holds ``PATH.lock`` (:func:`pasta_lens.io.file_lock`) while it writes, so two runs cannot interleave on one
file. Each run segment adds its elapsed compute time to the file (``segments_s``), so the wall time reported after
a resume covers every segment.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pasta_lens.io import atomic_write
from pasta_lens.objectives import ProfilingExample
from pasta_lens.plan import Head

CHECKPOINT_VERSION = 2


def _objective_digest(ex: ProfilingExample, vocab: int) -> str:
    """What the objective computes: its ``key`` if it has one, else its value on fixed random logits
    ``[1, pos, vocab]`` (``vocab`` = the model's, so target ids index it)."""
    key = getattr(ex.objective, "key", None)
    if isinstance(key, str) and key:
        return "key:" + key
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(1, int(ex.tokens.shape[1]), int(vocab), generator=gen)
    with torch.no_grad():
        value = ex.objective(probe)
    value = torch.as_tensor(value).detach().float().cpu()
    return "probe:" + repr([round(float(v), 5) for v in value.flatten()])


def example_digest(ex: ProfilingExample, vocab: int) -> str:
    """Identity of an example for checkpoints: tokens, key mask, attention mask and the objective.

    ``vocab`` is the model's vocabulary size (an objective without a ``key`` is probed on random logits of that
    width). Two examples with the same digest give the same numbers, so a stored row may be reused for either.

    Example:
        >>> example_digest(get_task("json").profiling_examples(model, n=1)[0], model.cfg.d_vocab)   # 32 hex digits
    """
    h = hashlib.sha256()
    for t in (ex.tokens, ex.key_mask, ex.attention_mask):
        h.update(repr(None if t is None else (str(t.dtype), tuple(t.shape))).encode())
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(_objective_digest(ex, vocab).encode())
    return h.hexdigest()[:32]


def heads_digest(heads: Sequence[Head]) -> str:
    """Identity of a list of scored heads (exact rows are keyed by the example's digest and this)."""
    return hashlib.sha256(repr(list(heads)).encode()).hexdigest()[:16]


def _load(path: Path) -> dict[str, Any]:
    fix = f"delete {path} to restart this task's profiling from scratch (its finished examples are lost)"
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # empty, cut or foreign file: pickle, zip and EOF errors all land here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"Checkpoint {path} is empty or corrupted and cannot be read ({type(err).__name__}: {first[:200]}); {fix}."
        ) from None
    if not isinstance(state, dict) or not {"fingerprint", "attribution", "exact"} <= set(state):
        raise ValueError(f"Checkpoint {path} is not a pasta-lens profiling checkpoint; {fix}.")
    return state


class Checkpoint:
    """Per-example results on disk, rewritten atomically after each example; refuses other run settings.

    Results are keyed by the example's own digest (and, for exact scores, by the list of heads scored), so a run
    with more examples drawn with the same seed reuses the ones already done. Use it as a context manager: the
    file is locked while the run lasts.
    """

    def __init__(self, path: str | os.PathLike | None, fingerprint: dict[str, Any], lock: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.lock = lock  # False: read another process' file (a torchrun rank's) without taking its lock
        self.fingerprint = fingerprint
        self.state: dict[str, Any] = {"fingerprint": fingerprint, "attribution": {}, "exact": {}, "segments_s": []}
        self._started = time.perf_counter()
        self._lock: Any = None

    def __enter__(self) -> Checkpoint:
        if self.path is None:
            return self
        from pasta_lens.io import file_lock

        if self.lock:
            self._lock = file_lock(self.path, what="the profiling checkpoint")
            self._lock.__enter__()
        try:
            if self.path.exists():
                state = _load(self.path)
                if state.get("fingerprint") != self.fingerprint:
                    stored = state.get("fingerprint")
                    old: dict[str, Any] = stored if isinstance(stored, dict) else {}
                    diff = sorted(k for k in set(self.fingerprint) | set(old) if old.get(k) != self.fingerprint.get(k))
                    raise ValueError(
                        f"Checkpoint {self.path} belongs to a different profiling run (differs in "
                        f"{diff}); delete it, or pass another checkpoint path."
                    )
                state.setdefault("segments_s", [])
                self.state = state
        except BaseException:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None
            raise
        self._previous = list(self.state["segments_s"])
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    def elapsed_s(self) -> float:
        """Compute time of every segment of this run so far: earlier segments (from the file) plus this one."""
        return float(sum(getattr(self, "_previous", []))) + (time.perf_counter() - self._started)

    def get(self, phase: str, key: str) -> Any:
        return self.state[phase].get(key)

    def put(self, phase: str, key: str, value: Any) -> None:
        self.state[phase][key] = value
        if self.path is None:
            return
        self.state["segments_s"] = list(getattr(self, "_previous", [])) + [time.perf_counter() - self._started]
        atomic_write(self.path, lambda tmp: torch.save(self.state, tmp))
