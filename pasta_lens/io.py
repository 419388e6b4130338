"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file pasta_lens writes for others to read (profiles, checkpoints, results, pictures) goes through
:func:`atomic_write`: the content is written to a temporary file in the target's own folder (same file
system, so the final :func:`os.replace` is atomic), flushed to disk with ``fsync``, given the ordinary
``0644`` mode (``mkstemp`` makes owner-only files), and only then renamed over the target. On any failure,
including ``KeyboardInterrupt``, the temporary file is removed and the old target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[str], None], *, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it onto ``path`` atomically.

    Args:
        path: the file to create or replace; its folder is created if missing.
        write: writes the whole content to the path it is given (e.g. ``lambda p: torch.save(obj, p)``).
        suffix: the temporary file's suffix (some writers pick the format from it, e.g. ``".png"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> atomic_write("run/state.pt", lambda tmp: torch.save(state, tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`.

    Example:
        >>> atomic_write_text("runs/x/summary.json", json.dumps(summary, indent=1) + "\\n")
    """
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)
