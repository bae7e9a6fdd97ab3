"""Fault injection under load: what ``kill -9`` of a serving process costs clients.

    python bench/bench_faults.py [--rate 300] [--duration 12]

Builds a registry of two flights models (as ``bench_serving.py`` does), deploys v0001 then
v0002 (live: green, standby: blue), starts the supervisor (``--interval 0.5``) and, for each
fault, sends single-row ``POST /flights/predict`` through nginx at ``--rate`` per second
with the open-loop generator of ``loadgen.py`` while the fault is injected 2 s in:

* ``live slot``: ``kill -9`` of the live slot's server;
* ``nginx``: ``kill -9`` of the nginx master (its worker is left holding the port);
* ``both slots``: ``kill -9`` of both slot servers (no fallback left).

Prints per fault: failed requests, what version answered after the kill, the time from
the kill until every killed process runs again (recovery), to the supervisor's restart
record, and until every later answer came from the live version again. Loopback only;
everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_serving
import loadgen
from driftline.registry import Registry
from driftline.serving.bluegreen import BlueGreen, stop_serving
from driftline.serving.probe import free_ports
from driftline.serving.router import Router
from driftline.serving.supervisor import start_detached
from driftline.settings import load_settings
from driftline.workspace import open_workspace

PACK = "flights"
PACKS = Path(__file__).resolve().parent.parent / "packs"


def victims(bg: BlueGreen, router: Router, fault: str) -> list[int]:
    slots = bg.status()["slots"]
    live = bg.status()["live"]
    return {"live slot": [slots[live]["pid"]], "nginx": [router.pid()],
            "both slots": [slots["blue"]["pid"], slots["green"]["pid"]]}[fault]


def healthy(bg: BlueGreen, router: Router) -> bool:
    status = bg.status()
    return router.is_running() and all(s["running"] for s in status["slots"].values())


def inject(bg, router, ws, body: bytes, fault: str, rate: float, duration: float) -> dict:
    """Run the load, kill 2 s in, and measure."""
    live_version = bg.status()["slots"][bg.status()["live"]]["version"]
    generator = loadgen.OpenLoop(ws.settings.serving.router_port,
                                 loadgen.post_request(body, f"/{PACK}/predict"), rate,
                                 duration, warmup=0.0, track_versions=True, timeout=15.0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        figures=bench_serving.loadgen_run(generator)))
    history_before = len(bg.status()["history"])
    thread.start()
    time.sleep(2.0)
    pids = victims(bg, router, fault)
    killed_wall, killed = time.time(), time.perf_counter()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    while any(_alive(p) for p in pids):
        time.sleep(0.01)
    while not healthy(bg, router) and thread.is_alive():
        time.sleep(0.05)
    recovered = time.perf_counter() - killed if healthy(bg, router) else float("nan")
    thread.join()
    figures = result["figures"]
    after = [(s, d, v) for s, d, v in generator.versions if s >= killed]
    not_live = [d for s, d, v in after if v != live_version]
    restarts = [h for h in bg.status()["history"][history_before:]
                if h["action"] == "restart"]
    return {
        "fault": fault, "killed_pids": pids,
        "requests": figures["ok"] + figures["errors"], "failed": figures["errors"],
        "error_kinds": figures["error_kinds"],
        "answered_after_kill_by": sorted({v for *_, v in after if v}),
        "kill_to_all_running_s": round(recovered, 2),
        "kill_to_restart_record_s": round(
            max((_wall(h["at"]) for h in restarts), default=float("nan")) - killed_wall, 2),
        "kill_to_live_version_only_s": round(max(not_live, default=killed) - killed, 2),
        "p99_ms": figures["p99_ms"],
    }


def _alive(pid: int) -> bool:
    from driftline.serving.processes import process_alive

    return process_alive(pid)


def _wall(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--duration", type=float, default=12.0)
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="dl-faults-", dir="/tmp"))
    [port] = free_ports(1)
    settings = load_settings(home=home, config=bench_serving.write_config(home, port),
                             packs_dir=PACKS)
    ws = open_workspace(PACK, settings)
    try:
        bench_serving.build_registry(ws)
        registry = Registry(ws.registry_dir, ws.model_name)
        bg, router = BlueGreen(ws), Router(settings)
        bg.deploy(registry.get("v0001"), "bench: standby")
        bg.deploy(registry.get("v0002"), "bench: live")
        start_detached(settings, interval=0.5)
        body = json.dumps({"rows": registry.get("v0002").metadata["smoke"]["rows"][:1]})
        table = []
        for fault in ("live slot", "nginx", "both slots"):
            deadline = time.monotonic() + 120
            while not healthy(bg, router) and time.monotonic() < deadline:
                time.sleep(0.2)
            row = inject(bg, router, ws, body.encode(), fault, args.rate, args.duration)
            print(json.dumps(row), flush=True)
            table.append(row)
        print(f"{'fault':<12} {'requests':>8} {'failed':>7} {'answered by':<12} "
              f"{'recovered s':>11} {'live-only s':>11}")
        for r in table:
            print(f"{r['fault']:<12} {r['requests']:>8} {r['failed']:>7} "
                  f"{','.join(r['answered_after_kill_by']):<12} "
                  f"{r['kill_to_all_running_s']:>11} {r['kill_to_live_version_only_s']:>11}")
    finally:
        stop_serving(settings)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
