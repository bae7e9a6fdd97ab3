"""More than one server process per slot: forked workers that accept on the slot's socket.

The slot server's main process verifies and loads the model, binds the socket, then forks
the other workers before any thread starts; each worker builds its own app (prediction log,
batcher) and runs uvicorn on the same listening socket, so the kernel hands each new
connection to one of them. All of them are in the main process's session and process group:
the router's drain (``SIGUSR1`` to the group) reaches every worker. The main process stops
them when it stops; a worker whose main process died (``SIGKILL``) is killed by the kernel
too (``PR_SET_PDEATHSIG``): the slot server dies whole, and no orphan keeps the socket
(a restarted server would find it still listening and refuse to start).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 4
PR_SET_PDEATHSIG = 1


def worker_count(setting: int) -> int:
    """Processes per slot for the ``serving.workers`` setting: itself, or for 0 one per
    core, at most :data:`MAX_AUTO_WORKERS`."""
    return setting or max(1, min(MAX_AUTO_WORKERS, os.cpu_count() or 1))


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the main process died before the line above
        os._exit(1)


def fork_workers(count: int, serve: Callable[[], None]) -> list[int]:
    """Fork ``count`` workers, each running ``serve()`` then exiting; their pids.

    Call it before this process starts any thread (only the calling thread survives a fork).
    """
    parent, pids = os.getpid(), []
    for _ in range(count):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _die_with_parent(parent)
                for stop in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(stop, signal.SIG_DFL)  # uvicorn installs its own
                serve()
                status = 0
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(status)
        pids.append(pid)
    if pids:
        log.info("forked %d more server worker(s): %s", len(pids), pids)
    return pids


def stop_workers(pids: list[int], grace_s: float = 12.0) -> None:
    """Stop the workers (``SIGTERM``, ``SIGKILL`` after ``grace_s``) and reap them."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    waiting = set(pids)
    while waiting:
        for pid in list(waiting):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                waiting.discard(pid)
        if not waiting:
            break
        if time.monotonic() > deadline:
            for pid in waiting:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.02)
    pids.clear()
