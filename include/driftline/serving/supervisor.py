"""Keep the local serving stack up: restart slot servers that died and the router.

``python -m driftline.serving.supervisor`` (started by ``make up`` and the demo, detached,
pid in ``serving/supervisor.pid``) checks every pack with local serving state every
``--interval`` seconds: a dead live or standby slot server is restarted with the version it
served, after a back-off when a restart fails (:meth:`BlueGreen.restore`, which records each
failover and restart in the pack's history); a dead nginx is started again. While the live
slot is down the router already falls back to the standby slot (:mod:`.router`). ``--once``
runs one pass (``make up`` after a reboot: the recorded live versions come back).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from driftline.packs import discover_packs
from driftline.serving.bluegreen import BlueGreen
from driftline.serving.processes import SUPERVISOR_PID, adopt, supervisor_pid
from driftline.serving.router import Router, RouterError
from driftline.settings import Settings, load_settings
from driftline.workspace import Workspace

log = logging.getLogger(__name__)

def supervise_once(settings: Settings) -> list[dict]:
    """One pass over every pack with local serving state; the records it wrote."""
    if settings.serving.backend != "local":
        return []
    packs, _ = discover_packs(settings.packs_dir)
    events: list[dict] = []
    served = False
    for state in sorted(settings.serving_dir.glob("*/state.json")):
        pack = packs.get(state.parent.name)
        if pack is None:
            continue
        platform = BlueGreen(Workspace(settings, pack))
        events += [{"pack": pack.name, **e} for e in platform.restore()]
        served = served or platform.status()["live"] is not None
    router = Router(settings)
    if served and not router.is_running():
        try:
            router.start()
            log.warning("the router was down; started it again (nginx pid %s)", router.pid())
            events.append({"pack": None, "action": "router-restart", "pid": router.pid()})
        except RouterError as exc:
            log.error("the router is down and did not start: %s", exc)
    return events


def start_detached(settings: Settings, interval: float = 1.0) -> int:
    """Start the supervisor in its own session unless one runs; its pid."""
    pid = supervisor_pid(settings.serving_dir)
    if pid:
        return pid
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.serving_dir / "supervisor.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftline.serving.supervisor", "--interval", str(interval)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "DRIFTLINE_HOME": str(settings.home),
                                         "DRIFTLINE_PACKS": str(settings.packs_dir),
                                         "DRIFTLINE_CONFIG": settings.config_file or ""})
    adopt(process)
    (settings.serving_dir / SUPERVISOR_PID).write_text(str(process.pid))
    return process.pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftline.serving.supervisor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        for event in supervise_once(settings):
            log.info("%s", event)
        if args.once:
            break
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
