"""Serving benchmark on loopback: latency through nginx and switching under load.

    python bench/bench_serving.py [--home DIR] [--rates 25,50] [--duration 8]

1. Builds a tiny registry (two versions trained on six days of 2013) in a temporary home,
   unless ``--home`` names one with at least two versions.
2. Deploys the first version (blue) and measures single-row ``POST /predict`` latency
   through the router with an open-loop generator: requests are sent on a fixed schedule
   whatever the responses do, and latency is measured from the *scheduled* send time, so
   a stalled server shows up as latency instead of as fewer requests (no coordinated
   omission). The highest rate straight to the slot's port gives nginx's share.
3. Deploys the second version (green) and rolls back while two clients keep sending: one
   reusing a single keep-alive connection (``http.client``), one opening a fresh
   connection per request. Counts failed requests and requests answered by the old version
   after the switch, and the time from the switch decision (the symlink rename) to the
   last old-version answer.

Everything is bounded in time and count, stays on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
from driftline.serving.bluegreen import BlueGreen
from driftline.serving.probe import PredictionProbe, free_ports
from driftline.settings import ServingSettings, Settings, TrainingSettings

MAX_REQUESTS_PER_CLIENT = 50_000
SWITCH_CLIENT_INTERVAL_S = 0.004  # each switch-phase client sends at most ~250 requests/s


# -- setup ---------------------------------------------------------------------------------
def build_registry(home: Path) -> None:
    """Train v0001 (20 rounds) and v0002 (30 rounds) on 2013-01-01..06 into ``home``."""
    from driftline.sources import load_flights_with_weather
    from driftline.training import train
    from driftline.versioning import DataRepo

    settings = Settings(home=home, training=TrainingSettings(holdout_days=2))
    days = [dt.date(2013, 1, d) for d in range(1, 7)]
    flights = load_flights_with_weather()
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    for day in days:
        repo.write_partition(day, flights[(flights["year"] == day.year)
                                          & (flights["month"] == day.month)
                                          & (flights["day"] == day.day)])
    for rounds in (20, 30):
        train(settings, repo.head(), days[0], days[-1], params={"num_boost_round": rounds},
              reason=f"bench, {rounds} rounds")



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
                        help="a driftline home with >= 2 registered versions")
    parser.add_argument("--rates", default="25,50",
                        help="open-loop request rates (requests/s), comma-separated")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, 30.0)
    rates = [float(r) for r in args.rates.split(",")][:4]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="dl-bench-", dir="/tmp"))
    home = tmp
    if args.home:
        shutil.copytree(args.home / "registry", home / "registry")
    else:
        build_registry(home)
    print(f"registry ready in {time.monotonic() - began:.1f}s ({home}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    router_port, blue_port, green_port = free_ports(3)
    settings = Settings(home=home, serving=ServingSettings(
        router_port=router_port, blue_port=blue_port, green_port=green_port))
    registry = Registry(settings.registry_dir, settings.model_name)
    v1, v2 = registry.versions()[-2:]
    row = v1.metadata["smoke"]["rows"][0]
    body = json.dumps({"rows": [row]})
    bg = BlueGreen(settings)
    results: dict = {}
    try:
        t0 = time.monotonic()
        bg.deploy(v1, "bench")
        results["first_deploy_s"] = round(time.monotonic() - t0, 2)
        print(f"deployed {v1.version} to blue in {results['first_deploy_s']}s")

        runs = [("router", router_port, rate) for rate in rates]
        runs.append(("direct_to_slot", blue_port, max(rates)))
        for name, port, rate in runs:
            figures = loadgen.run(port, body.encode(), rate, args.duration)
            results[f"latency_{name}_{rate:g}rps"] = figures
            print(f"single-row latency, {name} (open loop {rate:g} req/s, "
                  f"{args.duration:g}s): {figures}")

        clients = [PredictionProbe(router_port, body, keep_alive=k,
                                   max_requests=MAX_REQUESTS_PER_CLIENT,
                                   interval_s=SWITCH_CLIENT_INTERVAL_S) for k in (True, False)]
        for client in clients:
            client.start()
        time.sleep(1.0)
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
        results["switch_deploy"] = switch_figures(clients, deployed["switch"], deployed_at,
                                                  (start, rollback_start))
        results["switch_deploy"]["deploy_call_s"] = round(deploy_s, 2)
        results["switch_rollback"] = switch_figures(clients, rolled["switch"], rolled_at,
                                                    (rollback_start, end))
        expected = {deployed["switch"]["version"], rolled["switch"]["version"]}
        results["switch_phase_all_requests"] = {
            c.name: {"requests": len(c.results),
                     "failed": sum(1 for r in c.results if r[2] not in expected),
                     "connections": c.connections} for c in clients}
        for key in ("switch_deploy", "switch_rollback", "switch_phase_all_requests"):
            print(f"{key}: {json.dumps(results[key])}")
    finally:
        bg.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - began, 1)
    print(f"total {results['total_s']}s")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
