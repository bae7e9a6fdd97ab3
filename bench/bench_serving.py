"""Serving benchmark on loopback: latency, batch throughput, and switching under load.

    python bench/bench_serving.py [--home DIR] [--rates 1000,2000,4000,6000] [--duration 8] \
        [--predictor compiled|xgboost] [--workers N]

The stock path for comparison, in the same session: ``--predictor xgboost --workers 1``.

1. Builds a registry of two real flights-pack models (XGBoost with the default 200 rounds,
   trained on 2013-01-01..06 and ..07) in a temporary home, unless ``--home`` names one
   whose flights registry has at least two versions (e.g. ``.driftline`` after
   ``make demo``).
2. Deploys the first version (blue) and measures single-row ``POST /flights/predict``
   latency through nginx with the open-loop generator of ``bench/loadgen.py`` (fixed
   schedule, latency from the *scheduled* time, so queueing is not hidden), at each rate;
   then the highest rate straight to the slot's unix socket (nginx's share), and 1,000-row
   batches at ``--batch-rate`` per second (rows/s). With ``--predictor compiled`` it first
   waits until every worker serves the compiled trees. Each row also gives the load average
   (1 min, before and after: the machine is shared) and the CPU microseconds the slot's
   processes and nginx spent per answered request (less sensitive to the load than latency).
3. Deploys the second version (green) and rolls back while three clients keep sending:
   the open-loop generator at ``--switch-rate`` on pooled keep-alive connections (in a
   process of its own, so the deploying process cannot starve it; its latency percentiles
   over the steady seconds before the deploy and over deploy + rollback), one
   client reusing a single keep-alive connection (``http.client``) and one opening a fresh
   connection per request. Counts failed requests, requests sent after a switch that the old
   version answered, and the time from the switch (the symlink rename) to the last
   old-version answer.

The generator shares the 2 cores with nginx and the server. Everything is bounded in time
and count, stays on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import loadgen
from driftline.registry import Registry
from driftline.scoring import request_rows
from driftline.serving.bluegreen import BlueGreen, stop_serving
from driftline.serving.paths import slot_socket
from driftline.serving.probe import PredictionProbe, free_ports
from driftline.serving.router import Router
from driftline.settings import load_settings
from driftline.workspace import open_workspace

PACK = "flights"
ENDPOINT = f"/{PACK}/predict"
PACKS = Path(__file__).resolve().parent.parent / "packs"

MAX_REQUESTS_PER_CLIENT = 50_000
SWITCH_CLIENT_INTERVAL_S = 0.004  # each switch-phase client sends at most ~250 requests/s
SWITCH_PHASE_S = 180.0  # at most: 4 s steady, deploy (start, checks, 3 s watch), rollback
STEADY_S = 4.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- where the CPU goes ----------------------------------------------------------------
def process_tree(pid: int | None) -> list[int]:
    """``pid`` and its descendants (a slot server's workers, nginx's workers)."""
    if not pid:
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def measured(run, slot_pids: list[int], nginx_pids: list[int]) -> dict:
    """``run()``'s figures, with the load average (1 min) before and after and the CPU
    microseconds the slot's processes and nginx's spent per answered request."""
    load_before = os.getloadavg()[0]
    slot0, nginx0 = cpu_seconds(slot_pids), cpu_seconds(nginx_pids)
    figures = run()
    slot1, nginx1 = cpu_seconds(slot_pids), cpu_seconds(nginx_pids)
    answered = max(1, figures["ok"])
    figures["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    figures["slot_cpu_us_per_request"] = round((slot1 - slot0) / answered * 1e6, 1)
    figures["nginx_cpu_us_per_request"] = round((nginx1 - nginx0) / answered * 1e6, 1)
    return figures


def wait_for_predictor(ws, slot: str, predictor: str, timeout: float) -> str:
    """Wait until ten answers in a row of ``slot``'s ``/ready`` (fresh connections, so any
    worker) name a predictor starting with ``predictor``; the last name seen."""
    from driftline.serving.paths import slot_client

    deadline, streak, name = time.monotonic() + timeout, 0, "?"
    while streak < 10 and time.monotonic() < deadline:
        with slot_client(ws.serving_dir, slot, timeout=5) as client:
            name = client.get("/ready").json().get("predictor", "?")
        streak = streak + 1 if name.startswith(predictor) else 0
        time.sleep(0.05 if streak else 0.5)
    return name


def window_latency(versions: list, start: float, end: float) -> dict:
    """Latency percentiles (ms, from the scheduled time) of the answers scheduled in
    ``[start, end)`` (``perf_counter`` times)."""
    latencies = sorted(d - s for s, d, _ in versions if start <= s < end)
    if not latencies:
        return {"requests": 0}

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3, 2)

    return {"requests": len(latencies), "p50_ms": pct(0.5), "p90_ms": pct(0.9),
            "p99_ms": pct(0.99), "max_ms": pct(1.0)}


# -- setup ---------------------------------------------------------------------------------
def write_config(home: Path, router_port: int, predictor: str, workers: int) -> Path:
    """The bench's driftline TOML: the router's port, the predictor and workers per slot,
    and a two-day holdout for training."""
    config = home / "driftline.toml"
    config.write_text(f"[serving]\nrouter_port = {router_port}\npredictor = \"{predictor}\"\n"
                      f"workers = {workers}\n\n"
                      f"[packs.{PACK}.training]\nholdout_days = 2\n")
    return config


def build_registry(ws) -> None:
    """Train two versions with the default parameters: on 2013-01-01..06 and ..07."""
    from driftline.training import train
    from driftline.versioning import DataRepo

    days = [dt.date(2013, 1, d) for d in range(1, 8)]
    flights = ws.pack.load_source()
    repo = DataRepo.of(ws)
    for day in days:
        repo.write_partition(day, flights[(flights["year"] == day.year)
                                          & (flights["month"] == day.month)
                                          & (flights["day"] == day.day)])
    for last in (6, 7):
        train(ws, repo.head(), days[0], days[last - 1], reason=f"bench, to Jan {last}")


def batch_body(ws, model_version, rows: int) -> bytes:
    """A ``/predict`` body of ``rows`` holdout rows (repeated if the holdout is smaller)."""
    records = request_rows(ws.pack, model_version.holdout())
    return json.dumps({"rows": [records[i % len(records)] for i in range(rows)]}).encode()


def loadgen_switch_figures(versions: list, record: dict, clock_offset: float,
                           window: tuple[float, float]) -> dict:
    """The open-loop client's view of one switch: requests scheduled in ``window``
    (wall-clock), those answered by the old version after the switch, and when the last
    old answer came."""
    old, new = record["previous_version"], record["version"]
    switched = record["switched_at"] - clock_offset  # wall clock -> perf_counter
    rows = [(s, d, v) for s, d, v in versions
            if window[0] - clock_offset <= s < window[1] - clock_offset]
    old_after = [d for s, d, v in rows if s >= switched and v == old]
    last_old = max((d for s, d, v in rows if v == old), default=switched)
    return {"requests_answered": len(rows),
            "other_versions": sorted({v for *_, v in rows} - {old, new}),
            "old_version_sent_after_switch": len(old_after),
            "switch_to_last_old_answer_ms": round(max(0.0, last_old - switched) * 1e3, 2)}


# -- switching under load ------------------------------------------------------------------
def switch_figures(clients: list[PredictionProbe], record: dict, returned_at: float,
                   window: tuple[float, float]) -> dict:
    """Failures and timings of one switch from ``record`` (a deploy or rollback), over the
    requests sent from ``window[0]`` and answered before ``window[1]``."""
    old, new, switched = record["previous_version"], record["version"], record["switched_at"]
    figures: dict = {"action": record["action"], "from": f"{record['from_slot']} ({old})",
                     "to": f"{record['to_slot']} ({new})"}
    answered_old, answered_new = [], []
    for client in clients:
        rows = [r for r in client.results if r[0] >= window[0] and r[1] < window[1]]
        failed = [o for _, _, o, _ in rows if o not in (old, new)]
        figures[client.name] = {
            "requests": len(rows), "failed": len(failed),
            "old_version_sent_after_switch": sum(
                1 for sent, _, o, _ in rows if sent >= switched and o == old),
            "old_version_after_deploy_returned": sum(
                1 for sent, _, o, _ in rows if sent >= returned_at and o == old),
            "connections": len({c for *_, c in rows})}
        if failed:
            figures[client.name]["failures"] = sorted(set(failed))[:5]
        answered_old += [done for _, done, o, _ in rows if o == old]
        answered_new += [done for _, done, o, _ in rows if o == new]
    last_old = max((t for t in answered_old if t >= switched), default=switched)
    first_new = min(answered_new, default=float("nan"))
    figures["switch_to_last_old_answer_ms"] = round((last_old - switched) * 1e3, 2)
    figures["switch_to_first_new_answer_ms"] = round((first_new - switched) * 1e3, 2)
    figures["switch_to_router_verified_ms"] = round(record["router_verified_s"] * 1e3, 2)
    return figures


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None,
                        help="a driftline home with >= 2 registered flights versions")
    parser.add_argument("--batch-rate", type=float, default=200.0,
                        help="1000-row requests per second (200 = 200k rows/s offered)")
    parser.add_argument("--switch-rate", type=float, default=1000.0,
                        help="open-loop requests/s during the switch phase")
    parser.add_argument("--rates", default="1000,2000,4000,6000",
                        help="open-loop request rates (requests/s), comma-separated")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--predictor", choices=("compiled", "xgboost"), default="compiled",
                        help="serving.predictor (xgboost: the stock path)")
    parser.add_argument("--workers", type=int, default=0,
                        help="serving.workers: processes per slot (0: one per core; 1: stock)")
    parser.add_argument("--compiled-wait", type=float, default=300.0,
                        help="seconds to wait for the compiled trees before measuring")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, 30.0)
    rates = [float(r) for r in args.rates.split(",")][:6]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="dl-bench-", dir="/tmp"))
    home = tmp
    [router_port] = free_ports(1)
    settings = load_settings(home=home, config=write_config(home, router_port, args.predictor,
                                                            args.workers), packs_dir=PACKS)
    ws = open_workspace(PACK, settings)
    if args.home:
        shutil.copytree(args.home / "registry" / PACK, home / "registry" / PACK)
    else:
        build_registry(ws)
    print(f"registry ready in {time.monotonic() - began:.1f}s ({home}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    registry = Registry(ws.registry_dir, ws.model_name)
    v1, v2 = registry.versions()[-2:]
    row = v1.metadata["smoke"]["rows"][0]
    body = json.dumps({"rows": [row]})
    bg = BlueGreen(ws)
    results: dict = {}
    try:
        t0 = time.monotonic()
        bg.deploy(v1, "bench")
        results["first_deploy_s"] = round(time.monotonic() - t0, 2)
        print(f"deployed {v1.version} to blue in {results['first_deploy_s']}s")
        t0 = time.monotonic()
        results["predictor"] = wait_for_predictor(ws, "blue", args.predictor,
                                                  args.compiled_wait)
        slot_pids = process_tree(bg.status()["slots"]["blue"]["pid"])
        nginx_pids = process_tree(Router(settings).pid())
        print(f"predictor: {results['predictor']} (waited {time.monotonic() - t0:.1f}s); "
              f"slot processes {slot_pids}; load average {os.getloadavg()[0]:.2f}")

        runs = [("router", {"port": router_port, "path": ENDPOINT}, rate) for rate in rates]
        runs.append(("direct_to_slot", {"port": None, "path": "/predict",
                                        "uds": str(slot_socket(ws.serving_dir, "blue"))},
                     max(rates)))
        for name, target, rate in runs:
            target = dict(target)
            port = target.pop("port")
            figures = measured(functools.partial(loadgen.run, port, body.encode(), rate,
                                                 args.duration, **target),
                               slot_pids, nginx_pids)
            results[f"latency_{name}_{rate:g}rps"] = figures
            print(f"single-row latency, {name} (open loop {rate:g} req/s, "
                  f"{args.duration:g}s): {json.dumps(figures)}")
        batch = batch_body(ws, v1, 1000)
        figures = measured(lambda: loadgen.run(router_port, batch, args.batch_rate,
                                               args.duration, path=ENDPOINT),
                           slot_pids, nginx_pids)
        figures["rows_per_s"] = round(figures["achieved_rps"] * 1000)
        results["batch_1000_rows"] = figures
        print(f"1000-row batches through the router (open loop {args.batch_rate:g} req/s = "
              f"{args.batch_rate * 1000:,.0f} rows/s offered): {json.dumps(figures)}")

        clients = [PredictionProbe(router_port, body, keep_alive=k,
                                   max_requests=MAX_REQUESTS_PER_CLIENT,
                                   interval_s=SWITCH_CLIENT_INTERVAL_S, path=ENDPOINT,
                                   pack=PACK) for k in (True, False)]
        # the open-loop generator runs in a process of its own: the deployer (this process,
        # loading and checking the candidate) cannot starve it
        load_before = os.getloadavg()[0]
        generator = loadgen.InProcess(router_port, body.encode(), args.switch_rate,
                                      SWITCH_PHASE_S, path=ENDPOINT, warmup=0.0,
                                      track_versions=True)
        clock_offset = time.time() - time.perf_counter()
        steady_from = time.perf_counter() + 0.5
        for client in clients:
            client.start()
        time.sleep(STEADY_S)
        start = time.time()
        t0 = time.monotonic()
        deployed = bg.deploy(v2, "bench: switch under load")
        deploy_s = time.monotonic() - t0
        deployed_at = time.time()
        time.sleep(1.0)
        rollback_start = time.time()
        rolled = bg.rollback("bench: rollback under load")
        rolled_at = time.time()
        time.sleep(1.0)
        for client in clients:
            client.stop.set()
            client.join(15)
        end = time.time()
        results["switch_phase_open_loop"], versions = generator.result(SWITCH_PHASE_S + 60)
        results["switch_phase_open_loop"]["load_avg_1m"] = [round(load_before, 2),
                                                             round(os.getloadavg()[0], 2)]
        results["switch_phase_latency"] = {
            "steady_before_deploy": window_latency(versions, steady_from,
                                                   start - clock_offset),
            "deploy_and_rollback": window_latency(versions, start - clock_offset,
                                                  rolled_at - clock_offset),
            "deploy_call_s": round(deploy_s, 2)}
        results["switch_deploy"] = switch_figures(clients, deployed["switch"], deployed_at,
                                                  (start, rollback_start))
        results["switch_deploy"]["open_loop"] = loadgen_switch_figures(
            versions, deployed["switch"], clock_offset, (start, rollback_start))
        results["switch_deploy"]["deploy_call_s"] = round(deploy_s, 2)
        results["switch_rollback"] = switch_figures(clients, rolled["switch"], rolled_at,
                                                    (rollback_start, end))
        results["switch_rollback"]["open_loop"] = loadgen_switch_figures(
            versions, rolled["switch"], clock_offset, (rollback_start, end))
        expected = {deployed["switch"]["version"], rolled["switch"]["version"]}
        results["switch_phase_all_requests"] = {
            c.name: {"requests": len(c.results),
                     "failed": sum(1 for r in c.results if r[2] not in expected),
                     "connections": c.connections} for c in clients}
        for key in ("switch_deploy", "switch_rollback", "switch_phase_all_requests",
                    "switch_phase_open_loop", "switch_phase_latency"):
            print(f"{key}: {json.dumps(results.get(key))}")
    finally:
        stop_serving(settings)  # the pack's slots and the router
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - began, 1)
    print(f"total {results['total_s']}s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
