"""The main job: driftline's whole loop on real 2013 flight data, through a real scheduler.

1. start Airflow (scheduler, dag-processor, triggerer, api-server; SQLite, LocalExecutor)
2. replay Jan-Mar 2013 into the landing zone and backfill ``driftline_ingest`` over it
3. trigger ``driftline_train`` (as a person would in the UI): train, gate, deploy v1
4. month by month from April: replay, backfill ingest, send traffic to the model server,
   backfill ``driftline_monitor``; when a month's drift crosses the threshold the deferred
   sensor in ``driftline_retrain_on_drift`` triggers ``driftline_train``, whose gate deploys
   v2 or refuses it
5. print the summary; Airflow and the serving stack stay up (``make stop`` stops them)

Usage: ``python scripts/demo.py`` (``--up`` only starts the stack, ``--stop`` stops it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowApi, AirflowStack, airflow_env  # noqa: E402

log = logging.getLogger("demo")
DAGS = ["driftline_ingest", "driftline_train", "driftline_monitor",
        "driftline_retrain_on_drift", "driftline_rollback"]
TRAFFIC_ROWS_PER_MONTH = 3000


def month_end(first: dt.date) -> dt.date:
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)


def ingest(api: AirflowApi, settings, start: dt.date, end: dt.date) -> dict:
    """Replay ``[start, end]`` into the landing zone and backfill ingest over it."""
    from driftline.sources import iter_days, replay

    replay(settings.landing_dir, start, end)
    days = {d.isoformat() for d in iter_days(start, end)}
    began = time.monotonic()
    api.backfill("driftline_ingest", start.isoformat(), end.isoformat(), max_active_runs=4)
    runs = api.wait_runs("driftline_ingest", days, timeout=1800,
                         progress=_progress(f"ingest {start}..{end}"))
    seconds = time.monotonic() - began
    failed = sorted(r["logical_date"][:10] for r in runs if r["state"] != "success")
    print(f"   ingest {start}..{end}: {len(runs) - len(failed)}/{len(runs)} days ok "
          f"in {seconds:.0f}s{'; failed: ' + ', '.join(failed) if failed else ''}")
    return {"days": len(runs), "failed": failed, "seconds": seconds}


def _progress(label: str):
    last = {"n": -1}

    def show(done: int, total: int) -> None:
        if done != last["n"]:
            last["n"] = done
            print(f"   {label}: {done}/{total} runs finished", flush=True)

    return show


def send_traffic(settings, start: dt.date, end: dt.date, rows: int) -> int:
    """Send the month's flights to the live model through the router, in batches of 100."""
    import httpx
    from driftline.features import INPUT_COLUMNS
    from driftline.sources import load_flights_with_weather

    flights = load_flights_with_weather()
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    month = flights[(dates >= (start.year, start.month, start.day))
                    & (dates <= (end.year, end.month, end.day))]
    sample = month.sample(min(rows, len(month)), random_state=0)[INPUT_COLUMNS]
    records = json.loads(sample.to_json(orient="records"))
    url = f"http://127.0.0.1:{settings.serving.router_port}/predict"
    served = 0
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(records), 100):
            response = client.post(url, json={"rows": records[i:i + 100]})
            response.raise_for_status()
            served += len(response.json()["predictions"])
    return served


def train_runs(api: AirflowApi) -> list[dict]:
    return api.runs("driftline_train", order_by="-run_after")


def wait_new_train_run(api: AirflowApi, known: set[str], timeout: float = 300) -> dict | None:
    """Wait for a train run not in ``known`` that actually trains (not a skipped asset run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in train_runs(api):
            if run["dag_run_id"] in known or not (run.get("conf") or {}).get("drift_report_id"):
                continue
            return api.wait_run("driftline_train", run["dag_run_id"], timeout=1200)
        time.sleep(3)
    return None


def describe_train_run(api: AirflowApi, run: dict) -> str:
    states = {t["task_id"]: t["state"] for t in api.task_instances("driftline_train",
                                                                    run["dag_run_id"])}
    tasks = ", ".join(f"{k}={v}" for k, v in states.items())
    return f"{run['dag_run_id']}: {run['state']} ({tasks})"


def run_demo(stack: AirflowStack, months: int) -> int:
    from driftline.monitoring import drift_dir, report_id_for
    from driftline.overview import collect, render_text
    from driftline.settings import load_settings

    settings = load_settings()
    api = stack.api()
    for dag_id in DAGS:
        api.wait_for_dag(dag_id)
    timings: dict = {}

    print("== 1. ingest Jan-Mar 2013 (backfill, 4 runs at a time) ==")
    timings["ingest_q1"] = ingest(api, settings, dt.date(2013, 1, 1), dt.date(2013, 3, 31))

    print("== 2. train, gate and deploy v1 (manual trigger, as from the UI) ==")
    api.set_paused("driftline_train", False)
    began = time.monotonic()
    run_id = api.trigger("driftline_train", {"window_start": "2013-01-01",
                                             "window_end": "2013-03-31",
                                             "reason": "initial model on Q1 2013"})
    run = api.wait_run("driftline_train", run_id, timeout=1200)
    timings["train_v1_s"] = time.monotonic() - began
    print(f"   {describe_train_run(api, run)}")
    if run["state"] != "success":
        print("   v1 did not deploy; see the task logs in the UI")
        return 1

    print("== 3. later months: ingest, serve traffic, monitor drift ==")
    api.set_paused("driftline_retrain_on_drift", False)
    api.set_paused("driftline_monitor", False)
    known = {r["dag_run_id"] for r in train_runs(api)}
    first = dt.date(2013, 4, 1)
    outcome = None
    for _ in range(months):
        last = month_end(first)
        ingest(api, settings, first, last)
        served = send_traffic(settings, first, last, TRAFFIC_ROWS_PER_MONTH)
        print(f"   served {served} predictions for {first:%B} through the router")
        api.backfill("driftline_monitor", first.isoformat(), first.isoformat(),
                     max_active_runs=1)
        api.wait_runs("driftline_monitor", {first.isoformat()}, timeout=600)
        summary_path = drift_dir(settings) / report_id_for(first, last) / "summary.json"
        summary = json.loads(summary_path.read_text())
        print(f"   drift {first:%B}: share {summary['share']:.3f} (threshold "
              f"{summary['threshold']}) {'CROSSED' if summary['crossed'] else 'below'}")
        if summary["crossed"]:
            print("   waiting for the drift sensor to trigger retraining ...")
            outcome = wait_new_train_run(api, known)
            if outcome:
                print(f"   drift-triggered {describe_train_run(api, outcome)}")
            break
        first = last + dt.timedelta(days=1)

    print()
    print("================ driftline summary ================")
    print(render_text(collect(settings)))
    print(f"== timings == ingest Q1 {timings['ingest_q1']['seconds']:.0f}s "
          f"({timings['ingest_q1']['days']} days), train+gate+deploy v1 "
          f"{timings['train_v1_s']:.0f}s")
    print_access(stack, settings)
    if outcome is None:
        print("no drift-triggered retraining happened in the months replayed")
        return 1
    return 0


def print_access(stack: AirflowStack, settings) -> None:
    print(f"== Airflow UI == {stack.url}  (login admin / admin); driftline page: "
          f"{stack.url}/driftline/")
    print(f"== model endpoint == http://127.0.0.1:{settings.serving.router_port}/predict "
          f"(/version, /health)")
    print("stop everything with: make stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--up", action="store_true", help="only start Airflow and serving")
    parser.add_argument("--stop", action="store_true", help="stop Airflow and serving")
    parser.add_argument("--months", type=int, default=9, help="later months to move through")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    airflow_home = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow"))
    driftline_home = Path(os.environ.get("DRIFTLINE_HOME", ROOT / ".driftline"))
    os.environ["DRIFTLINE_HOME"] = str(driftline_home)
    stack = AirflowStack(airflow_env(ROOT, airflow_home, driftline_home))

    from driftline.serving.bluegreen import BlueGreen
    from driftline.settings import load_settings

    if args.stop:
        stack.stop()
        BlueGreen(load_settings()).stop_all()
        print("stopped Airflow and the serving stack")
        return 0
    print(f"== starting Airflow in {airflow_home} (state in {driftline_home}) ==")
    stack.init()
    stack.start()
    stack.wait_healthy()
    if args.up:
        state = BlueGreen(load_settings()).status()
        print(f"Airflow is up; serving: {state.get('live') or 'nothing deployed yet'}")
        print_access(stack, load_settings())
        return 0
    return run_demo(stack, args.months)


if __name__ == "__main__":
    sys.exit(main())
