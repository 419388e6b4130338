"""Resumable profiling: per-example results on disk, keyed by what the example is, refusing other run settings.

:func:`~pasta_lens.profiling.profile_heads` with ``checkpoint=path`` stores each example's attribution and exact
results here as soon as they are computed (the whole state rewritten atomically, :func:`pasta_lens.io.atomic_write`),
so an interrupted run restarted with the same arguments skips what is done and returns an identical result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from pasta_lens.io import atomic_write
from pasta_lens.objectives import ProfilingExample
from pasta_lens.steering import Head

CHECKPOINT_VERSION = 1


def _example_digest(ex: ProfilingExample) -> str:
    """Identity of an example for checkpoints: its tokens, key mask and attention mask (not the objective)."""
    h = hashlib.sha256()
    for t in (ex.tokens, ex.key_mask, ex.attention_mask):
        h.update(repr(None if t is None else (str(t.dtype), tuple(t.shape))).encode())
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _heads_digest(heads: Sequence[Head]) -> str:
    return hashlib.sha256(repr(list(heads)).encode()).hexdigest()[:16]


class _Checkpoint:
    """Per-example results on disk, rewritten atomically after each example; refuses other run settings.

    Results are keyed by the example's own digest (and, for exact scores, by the list of heads scored), so a run
    with more examples drawn with the same seed reuses the ones already done.
    """

    def __init__(self, path: Optional[Union[str, os.PathLike]], fingerprint: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.state: dict[str, Any] = {"fingerprint": fingerprint, "attribution": {}, "exact": {}}
        if self.path is not None and self.path.exists():
            state = torch.load(self.path, weights_only=True)
            if state.get("fingerprint") != fingerprint:
                diff = sorted(k for k in set(fingerprint) | set(state.get("fingerprint", {}))
                              if state.get("fingerprint", {}).get(k) != fingerprint.get(k))
                raise ValueError(f"Checkpoint {self.path} belongs to a different profiling run (differs in "
                                 f"{diff}); delete it, or pass another checkpoint path.")
            self.state = state

    def get(self, phase: str, key: str) -> Any:
        return self.state[phase].get(key)

    def put(self, phase: str, key: str, value: Any) -> None:
        self.state[phase][key] = value
        if self.path is None:
            return
        atomic_write(self.path, lambda tmp: torch.save(self.state, tmp))

