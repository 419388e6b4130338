"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file pasta_lens writes for others to read (profiles, checkpoints, results, pictures) goes through
:func:`atomic_write`: the content is written to a temporary file in the target's own folder (same file
system, so the final :func:`os.replace` is atomic), flushed to disk with ``fsync``, given the ordinary
``0644`` mode (``mkstemp`` makes owner-only files), and only then renamed over the target. On any failure,
including ``KeyboardInterrupt``, the temporary file is removed and the old target is left as it was.

:func:`file_lock` keeps two runs from writing the same output at once (an ``O_EXCL`` lock file beside it, holding
the writer's pid, host and command line); :func:`folder_lock` does the same for a results folder (``FOLDER/.lock``).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PathLike = str | os.PathLike


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


class LockedError(RuntimeError):
    """Another live process holds the lock on a file (see :func:`file_lock`)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _this_process() -> dict[str, object]:
    """What a lock file records: this process's pid, host and command line (``sys.orig_argv``, as typed)."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(argv)}


@contextmanager
def file_lock(path: PathLike, *, what: str = "this file") -> Iterator[Path]:
    """Hold ``PATH.lock`` (created with ``O_EXCL``, holding this process's pid, host and command) while the body runs.

    Two runs that write the same output (a profile, a checkpoint) must not interleave: the last writer would
    silently replace the other's work. A second process that asks for a held lock gets :class:`LockedError`
    naming the holder (pid, host and the command it runs). The lock is not re-entrant: the same process asking
    twice is refused too. A lock left by a process that no longer exists on this host (killed with SIGKILL, a
    crash) is stale: it is removed and taken over. A lock from another host cannot be checked and is never
    taken over: the error says to delete it by hand if no run is active there.

    Example:
        >>> with file_lock("profiles/my.json", what="the profile"):
        ...     profile.save("profiles/my.json")
    """
    path = Path(path)
    with _hold(path.with_name(path.name + ".lock"), path, what) as held:
        yield held


@contextmanager
def folder_lock(folder: PathLike, *, what: str = "the results folder") -> Iterator[Path]:
    """Hold ``FOLDER/.lock`` while the body runs: the lock of every writer of a results folder.

    Same rules as :func:`file_lock` (a second run on the folder is refused with an error naming the running
    process and its command; a stale lock is taken over). The folder is created if missing.

    Example:
        >>> with folder_lock("runs/smollm2", what="the evaluation folder"):
        ...     ...  # append rows to runs/smollm2/examples.jsonl, write the summary
    """
    folder = Path(folder)
    with _hold(folder / ".lock", folder, what) as held:
        yield held


@contextmanager
def _hold(lock: Path, path: Path, what: str) -> Iterator[Path]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = _this_process()
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "null")
            except (OSError, ValueError):
                holder = None
            if not isinstance(holder, dict):  # half-written by a process that died between create and write
                if time.time() - _mtime(lock) < 5.0:
                    time.sleep(0.2)
                    continue
                holder = {"pid": None, "host": me["host"]}
            pid, host = holder.get("pid"), holder.get("host")
            if host == me["host"] and (not isinstance(pid, int) or not _pid_alive(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            where = f"process {pid} on {host}" + ("" if host == me["host"] else " (another host: cannot check)")
            command = holder.get("command")
            if isinstance(command, str) and command:
                where += f" running `{command if len(command) <= 300 else command[:297] + '...'}`"
            raise LockedError(
                f"{what[:1].upper()}{what[1:]} {path} is in use by {where} (lock file {lock}). Wait "
                "for that run to finish, or give this run another output path; if no such run is "
                f"active, delete {lock}."
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise LockedError(f"Could not take the lock {lock} for {path}; delete it if no run is active.")
    try:
        yield path
    finally:
        try:
            if json.loads(lock.read_text()) == me:
                lock.unlink()
        except (OSError, ValueError):
            pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
