"""A 90-day ingest backfill on each tier, side by side: SQLite with LocalExecutor against
PostgreSQL with CeleryExecutor (two workers, Redis), the same DAGs.

    python bench/bench_tiers.py [--tiers sqlite,postgres-celery] [--days 90] [--repeat 1]
                                [--keep]

Per tier and repeat, in a fresh stack in a temporary directory (as the e2e test starts one;
PostgreSQL and Redis started and stopped with it; loopback only):

1. replays ``--days`` days of the flights pack (from 2013-01-01) into the landing zone and
   waits until ``flights_ingest`` is parsed (not timed);
2. creates the backfill with the real ``airflow backfill create --max-active-runs 4`` (the
   DAG paused meanwhile, as the stack's helper does), retrying a failed create up to
   :data:`CREATE_TRIES` times;
3. waits until a run has finished for every day.

``days/s`` is days over the wall time of steps 2-3. Lock errors: failed creates whose error
names a lock, plus the lines naming one (SQLite ``database is locked``, PostgreSQL deadlocks,
lock or serialization failures) in every log of the stack, task logs included. Retries: the
create's retries, and task instances that ran more than once. One row per tier (medians over
the repeats; each repeat's figures below it), then the ratio of the tiers' days/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

from airflow_stack import TIERS, AirflowApi, AirflowStack, airflow_env  # noqa: E402
from bench_backfill import error_line, load_test_helpers  # noqa: E402
from driftline.landing import replay  # noqa: E402
from driftline.serving.probe import free_ports  # noqa: E402

PACK, FIRST_DAY = "flights", dt.date(2013, 1, 1)
DAG = f"{PACK}_ingest"
CREATE_TRIES = 10
LOCK = re.compile(r"database is locked|deadlock detected|could not obtain lock|"
                  r"could not serialize access|lock timeout|LockNotAvailable", re.IGNORECASE)


def start_stack(tier: str, home: Path, test_config: Path) -> AirflowStack:
    """A fresh, healthy stack of ``tier`` in ``home``."""
    api_port, worker_logs, trigger_logs = free_ports(3)
    extra = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
             "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
             "DRIFTLINE_CONFIG": str(test_config), "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
             "DRIFTLINE_PRELOAD": "1"}
    if tier == "sqlite":
        extra["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow/airflow.db"
    stack = AirflowStack(airflow_env(ROOT, home / "airflow", home / "driftline",
                                     port=api_port, extra=extra, tier=tier))
    stack.init()
    stack.start()
    stack.wait_healthy(timeout=600)
    return stack


def create_backfill(stack: AirflowStack, api: AirflowApi, end: dt.date) -> list[str]:
    """``airflow backfill create`` over ``FIRST_DAY..end`` with the DAG paused, retried
    while it fails; the error line of each failed try."""
    argv = [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", DAG,
            "--from-date", str(FIRST_DAY), "--to-date", str(end), "--max-active-runs", "4"]
    failures: list[str] = []
    api.set_paused(DAG, True)
    try:
        while len(failures) < CREATE_TRIES:
            done = subprocess.run(argv, env=stack.env, capture_output=True, text=True,
                                  timeout=600)
            if done.returncode == 0:
                return failures
            failures.append(error_line(f"{done.stdout}\n{done.stderr}"))
            print(f"  create failed: {failures[-1]}", flush=True)
            time.sleep(2)
        raise RuntimeError(f"backfill create failed {CREATE_TRIES} times: {failures}")
    finally:
        api.set_paused(DAG, False)


def lock_lines(log_dir: Path) -> int:
    """Lines naming a lock error in every file under ``log_dir``."""
    return sum(len(LOCK.findall(path.read_text(errors="replace")))
               for path in log_dir.rglob("*") if path.is_file())


def retried_tasks(stack: AirflowStack) -> int:
    """Task instances of the DAG that ran more than once, from the stack's database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as db:
            return db.execute(text("SELECT count(*) FROM task_instance WHERE dag_id = :d "
                                   "AND try_number > 1"), {"d": DAG}).scalar_one()
    finally:
        engine.dispose()


def bench_tier(tier: str, home: Path, days: int, workspace_at, test_config: Path) -> dict:
    """One backfill of ``days`` days on a fresh stack of ``tier``: its figures."""
    end = FIRST_DAY + dt.timedelta(days=days - 1)
    print(f"== {tier}: stack in {home}", flush=True)
    started = time.monotonic()
    stack = start_stack(tier, home, test_config)
    up_s = time.monotonic() - started
    ws = workspace_at(home / "driftline", PACK)
    try:
        replay(ws, FIRST_DAY, end)
        api = stack.api()
        api.wait_for_dag(DAG)
        began = time.monotonic()
        failures = create_backfill(stack, api, end)
        dates = {str(FIRST_DAY + dt.timedelta(n)) for n in range(days)}
        runs = api.wait_runs(DAG, dates, timeout=3600)
        wall = time.monotonic() - began
        row = {"tier": tier, "days": days, "wall_s": round(wall, 1),
               "days_per_s": round(days / wall, 3),
               "runs_ok": sum(r["state"] == "success" for r in runs),
               "runs_failed": sum(r["state"] == "failed" for r in runs),
               "create_lock_errors": sum(bool(LOCK.search(f)) for f in failures),
               "create_retries": len(failures), "task_retries": retried_tasks(stack),
               "up_s": round(up_s)}
    finally:
        stack.stop()
        from driftline.serving.bluegreen import stop_serving

        stop_serving(ws.settings)
    row["log_lock_lines"] = lock_lines(stack.log_dir)
    return row


COLUMNS = (("tier", "tier", "<16"), ("days", "days", ">4"), ("wall s", "wall_s", ">7"),
           ("days/s", "days_per_s", ">7"), ("runs ok", "runs_ok", ">7"),
           ("runs failed", "runs_failed", ">11"),
           ("create lock errors", "create_lock_errors", ">18"),
           ("lock lines in logs", "log_lock_lines", ">18"),
           ("create retries", "create_retries", ">14"), ("task retries", "task_retries", ">12"),
           ("stack up s", "up_s", ">10"))


def median_row(rows: list[dict]) -> dict:
    """The tier's figures, each the median over its repeats."""
    merged = {"tier": rows[0]["tier"]}
    for _, key, _ in COLUMNS[1:]:
        merged[key] = statistics.median(r[key] for r in rows)
    return merged


def print_table(rows: list[dict]) -> None:
    """One row per tier (medians), each repeat's days/s below, then the ratio."""
    print(" ".join(f"{title:{fmt}}" for title, _, fmt in COLUMNS))
    by_tier = {tier: [r for r in rows if r["tier"] == tier] for tier in
               dict.fromkeys(r["tier"] for r in rows)}
    medians = {tier: median_row(tier_rows) for tier, tier_rows in by_tier.items()}
    for row in medians.values():
        print(" ".join(f"{row[key]:{fmt}}" for _, key, fmt in COLUMNS))
    for tier, tier_rows in by_tier.items():
        print(f"{tier}: wall s per repeat {[r['wall_s'] for r in tier_rows]}")
    if {"sqlite", "postgres-celery"} <= set(medians):
        ratio = medians["postgres-celery"]["days_per_s"] / medians["sqlite"]["days_per_s"]
        print(f"postgres-celery / sqlite days/s: {ratio:.2f} "
              f"({'faster' if ratio > 1 else 'slower'} on PostgreSQL + Celery)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    tiers = args.tiers.split(",")
    unknown = set(tiers) - set(TIERS)
    if unknown:
        parser.error(f"--tiers: unknown {sorted(unknown)}; expected some of {TIERS}")
    root = Path(tempfile.mkdtemp(prefix="dl-tiers-", dir="/tmp"))
    workspace_at, test_config = load_test_helpers(root)
    rows = []
    try:
        for n in range(args.repeat):
            for tier in tiers:  # alternating, so a change in the machine's load hits both
                row = bench_tier(tier, root / f"{tier}-{n}", args.days, workspace_at,
                                 test_config)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
