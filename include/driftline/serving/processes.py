"""Finding and stopping the detached processes serving runs (slot servers, nginx, the
supervisor).

They are started in their own session so they outlive the process that started them (an
Airflow task), which is why they are tracked by pid and identified by command line before
any signal is sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

_children: dict[int, subprocess.Popen] = {}
"""Processes started by this process, reaped when they stop (no zombies left behind)."""


def adopt(process: subprocess.Popen) -> None:
    """Remember a child so that stopping it also reaps it."""
    _children[process.pid] = process


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` exists and is not a zombie (reaping it if it is our child)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def process_cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces ('' when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def stop_process(pid: int, grace_s: float = 15.0) -> bool:
    """Stop ``pid``: SIGTERM, then SIGKILL after ``grace_s``.

    :return: whether it is gone.
    """
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            os.kill(pid, signal.SIGCONT)  # a stopped (hung) process must run to handle it
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return True
            time.sleep(0.05)
        if sig == signal.SIGTERM:
            log.warning("pid %d ignored SIGTERM for %.0fs; killing it", pid, grace_s)
    return not process_alive(pid)


def set_nice(pid: int, nice: int) -> None:
    """Set the nice value of every thread of ``pid``; lowering it may need privileges, and
    a refusal is logged, not raised."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
        except PermissionError:
            log.warning("pid %d: not allowed to set nice %d; it keeps %d", pid, nice,
                        os.getpriority(os.PRIO_PROCESS, int(task.name)))
            return
        except (ProcessLookupError, FileNotFoundError):
            continue


SUPERVISOR_PID = "supervisor.pid"


def supervisor_pid(serving_dir: Path) -> int | None:
    """The pid of the supervisor of the installation serving from ``serving_dir``, if one
    runs (:mod:`driftline.serving.supervisor`)."""
    try:
        pid = int((Path(serving_dir) / SUPERVISOR_PID).read_text())
    except (OSError, ValueError):
        return None
    ok = process_alive(pid) and "driftline.serving.supervisor" in process_cmdline(pid)
    return pid if ok else None


def stop_supervisor(serving_dir: Path) -> None:
    """Stop that supervisor (before slots are stopped on purpose, which it would restart)."""
    pid = supervisor_pid(serving_dir)
    if pid is not None and not stop_process(pid):
        log.error("supervisor pid %d did not stop", pid)
    (Path(serving_dir) / SUPERVISOR_PID).unlink(missing_ok=True)
