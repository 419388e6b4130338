"""Memory of this process from ``/proc/self/status`` (Linux), shared by the bench scripts.

``VmRSS`` is the resident memory now, ``VmHWM`` its high-water mark; both in KiB. A bench measures what a step adds
as ``status_kb("VmHWM") - status_kb("VmRSS")`` taken before it (the script runs the step in a fresh process, or
resets the mark, so the high-water mark belongs to the step).
"""

from __future__ import annotations


def status_kb(field: str) -> int:
    """The value of one ``/proc/self/status`` field in KiB, e.g. ``status_kb("VmHWM")``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no field {field!r} (this needs Linux)")
