"""Peak memory of one call in a benchmark worker process, from ``/proc/self``.

Writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's high-water mark (``VmHWM``),
so a peak read afterwards is the call's own, not the set-up's. Where that file cannot be
written, the process's lifetime peak (``ru_maxrss``) is all there is.
"""

from __future__ import annotations

import resource
from pathlib import Path


def reset_peak() -> bool:
    """Reset this process's resident-set high-water mark.

    :return: whether it was reset (a later :func:`peak_mb` is then the call's own).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def peak_mb(reset: bool) -> float:
    """The resident peak since :func:`reset_peak`, or the lifetime peak if it did not reset.

    :param reset: what :func:`reset_peak` returned.
    """
    if reset:
        return status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
