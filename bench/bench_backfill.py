"""``airflow backfill create`` under load on SQLite: stock locking against driftline's fix.

    python bench/bench_backfill.py [--modes stock,driftline] [--creates 50] [--seed 1]
                                   [--max-failures 3] [--settle 900] [--keep]

Per mode (``DRIFTLINE_SQLITE_LOCKING``, read by ``config/airflow_local_settings.py``:
``stock`` leaves Airflow's SQLite behaviour as it ships, ``driftline`` is the fix), in a
fresh stack in a temporary directory (SQLite, LocalExecutor, no watchdog):

1. replays the landing data (flights 2013, bikes 2011-2012) and unpauses ``flights_ingest``,
   ``bikes_ingest``, ``flights_monitor`` and ``flights_retrain_on_drift``, so their
   scheduled runs, the monitor and the retrain policy sensor run alongside the backfills;
2. runs ``--creates`` real ``airflow backfill create --max-active-runs 4`` commands,
   alternating flights/bikes over consecutive disjoint windows of 5-30 days (drawn from
   ``--seed``; a bikes window reaches the next month start, so it always has a run; a pack
   whose data is used up starts again at its first day, and those runs exist already).
   Before each create it waits (at most 900 s) until the DAG has no open backfill. It stops
   early once the scheduler has exited (no backfill would close again), once a wait ran out
   ("stuck"), or after ``--max-failures`` failed creates;
3. waits (at most ``--settle`` s; not at all without a scheduler) until every backfill run
   has finished, and counts them.

A second thread polls the pid files every second and counts exits of the scheduler and
triggerer. Prints a line per create, one table row per mode and the failed creates' error
lines. ``create s``: the CLI's duration; ``wall s``: creates and settling (not the setup).
Loopback only; each stack is stopped at the end and its directory removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from airflow_stack import TERMINAL, AirflowApi, AirflowStack, airflow_env  # noqa: E402
from driftline.landing import replay  # noqa: E402
from driftline.serving.probe import free_ports  # noqa: E402

PACKS = {"flights": (dt.date(2013, 1, 1), dt.date(2013, 12, 31)),
         "bikes": (dt.date(2011, 1, 1), dt.date(2012, 12, 31))}
"""Each pack's landing data replayed, and the days its backfill windows cover."""
MONTHLY = {"bikes"}
UNPAUSED = ("flights_ingest", "bikes_ingest", "flights_monitor", "flights_retrain_on_drift")
WATCHED = ("scheduler", "triggerer")
SPAN_DAYS = (5, 30)
OPEN_WAIT_S = 900
CREATE_TIMEOUT_S = 600
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\w*\b:")


@dataclass
class Create:
    """One ``airflow backfill create``."""

    pack: str
    start: dt.date
    end: dt.date
    rc: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def dag_id(self) -> str:
        return f"{self.pack}_ingest"


@dataclass
class Outcome:
    """What one mode did: its creates, and why it stopped early if it did."""

    creates: list[Create] = field(default_factory=list)
    stuck: int = 0
    stopped: str = ""

    @property
    def failed(self) -> list[Create]:
        return [c for c in self.creates if c.rc != 0]


class Watcher(threading.Thread):
    """Counts exits of the scheduler and triggerer: a pid that disappears or changes."""

    def __init__(self, stack: AirflowStack, poll_s: float = 1.0):
        super().__init__(daemon=True)
        self.stack, self.poll_s = stack, poll_s
        self.exits: Counter = Counter()
        self.pids: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with contextlib.suppress(OSError, ValueError):  # a pid file mid-write
                self.observe(self.stack.running())
            self.done.wait(self.poll_s)

    def observe(self, alive: dict[str, int]) -> None:
        for name in WATCHED:
            pid, last = alive.get(name), self.pids.get(name)
            if last and pid != last:
                self.exits[name] += 1
                print(f"  !! {name} (pid {last}) exited", flush=True)
            if pid:
                self.pids[name] = pid
            else:
                self.pids.pop(name, None)

    @property
    def scheduler_gone(self) -> bool:
        return self.exits["scheduler"] > 0 and "scheduler" not in self.pids

    def stop(self) -> None:
        self.done.set()
        self.join()


def start_stack(home: Path, mode: str, test_config: Path) -> AirflowStack:
    """A fresh, healthy stack in ``home`` (as the e2e fixture starts one)."""
    api_port, worker_logs, trigger_logs = free_ports(3)
    env = airflow_env(ROOT, home / "airflow", home / "driftline", port=api_port, extra={
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        "DRIFTLINE_CONFIG": str(test_config),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "DRIFTLINE_PRELOAD": "1",
        "DRIFTLINE_SQLITE_LOCKING": mode,
    })
    stack = AirflowStack(env)
    stack.init()
    stack.start()
    stack.wait_healthy()
    return stack


def replay_landing(driftline_home: Path, workspace_at) -> None:
    """Drop every pack's landing files, a month at a time, saying how far it got."""
    for pack, (first, last) in PACKS.items():
        ws = workspace_at(driftline_home, pack)
        source = ws.pack.load_source()
        started, month, files = time.monotonic(), first, 0
        while month <= last:
            following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            files += len(replay(ws, month, min(following - dt.timedelta(days=1), last),
                                source=source))
            print(f"\r  replay {pack}: {month:%Y-%m} ({files} files)", end="", flush=True)
            month = following
        print(f"\r  replay {pack}: {first}..{last}, {files} files in "
              f"{time.monotonic() - started:.0f} s", flush=True)


def run_dates(pack: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """The logical dates a backfill of ``pack`` over ``start..end`` makes runs for."""
    days = [start + dt.timedelta(n) for n in range((end - start).days + 1)]
    return [d for d in days if d.day == 1] if pack in MONTHLY else days


def windows(seed: int, count: int) -> list[Create]:
    """``count`` creates, alternating packs, each pack's windows consecutive and disjoint."""
    rng = random.Random(seed)
    cursor = {pack: first for pack, (first, _) in PACKS.items()}
    planned = []
    for i in range(count):
        pack = list(PACKS)[i % len(PACKS)]
        first, last = PACKS[pack]
        start = cursor[pack]
        end = start + dt.timedelta(days=rng.randint(*SPAN_DAYS) - 1)
        if pack in MONTHLY and not run_dates(pack, start, end):
            end = (end.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        if end > last:  # the data is used up: start again at the first day
            start, end = first, first + (end - start)
        planned.append(Create(pack, start, end))
        cursor[pack] = end + dt.timedelta(days=1)
    return planned


def has_open_backfill(api: AirflowApi, dag_id: str) -> bool | None:
    """Whether ``dag_id`` has a backfill not completed yet (None: the API did not say)."""
    try:
        backfills = api.backfills(dag_id)
    except Exception:  # the api-server waited on SQLite's lock past the retries
        return None
    return any(b.get("completed_at") is None for b in backfills)


def wait_closed(api: AirflowApi, dag_id: str, watcher: Watcher, timeout: float) -> bool:
    """Wait until ``dag_id`` has no open backfill; False after ``timeout`` or once the
    scheduler is gone (nothing would close it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not watcher.scheduler_gone:
        if has_open_backfill(api, dag_id) is False:
            return True
        time.sleep(2)
    return False


def error_line(output: str) -> str:
    """The line that says why a create failed: the last exception line, else the last line
    naming an error, else the last line."""
    lines = [ANSI.sub("", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    for pick in (EXCEPTION_LINE.search,
                 lambda line: "error" in line.lower() and "Background on this" not in line,
                 bool):
        found = [line for line in lines if pick(line)]
        if found:
            return found[-1][:300]
    return "(no output)"


def backfill_create(stack: AirflowStack, create: Create) -> None:
    """Run the real CLI for ``create``; record its exit status, duration and error."""
    argv = [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", create.dag_id,
            "--from-date", str(create.start), "--to-date", str(create.end),
            "--max-active-runs", "4"]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, env=stack.env, capture_output=True, text=True,
                              timeout=CREATE_TIMEOUT_S)
        create.rc = done.returncode
        if done.returncode:
            create.error = error_line(f"{done.stdout}\n{done.stderr}")
    except subprocess.TimeoutExpired:
        create.rc, create.error = -1, f"timed out after {CREATE_TIMEOUT_S} s"
    create.seconds = time.monotonic() - started


def run_creates(stack: AirflowStack, api: AirflowApi, watcher: Watcher,
                args: argparse.Namespace) -> Outcome:
    """The creates, one DAG's open backfill at a time, until done or stopped early."""
    outcome = Outcome()
    planned = windows(args.seed, args.creates)
    for n, create in enumerate(planned, 1):
        if watcher.scheduler_gone:
            outcome.stopped = "the scheduler exited"
            break
        if not wait_closed(api, create.dag_id, watcher, OPEN_WAIT_S):
            if not watcher.scheduler_gone:
                outcome.stuck += 1
                outcome.stopped = f"{create.dag_id}: a backfill still open after {OPEN_WAIT_S} s"
            else:
                outcome.stopped = "the scheduler exited"
            break
        backfill_create(stack, create)
        outcome.creates.append(create)
        runs = len(run_dates(create.pack, create.start, create.end))
        status = "ok" if create.rc == 0 else f"FAILED rc {create.rc}: {create.error}"
        print(f"  create {n}/{len(planned)} {create.dag_id} {create.start}..{create.end} "
              f"({runs} runs) {create.seconds:.1f} s: {status}", flush=True)
        if len(outcome.failed) >= args.max_failures:
            outcome.stopped = f"{len(outcome.failed)} failed creates"
            break
    return outcome


def backfill_runs(api: AirflowApi) -> Counter:
    """Backfill runs of both ingest DAGs by state (None: the API did not answer)."""
    states: Counter = Counter()
    for pack in PACKS:
        for run in api.runs(f"{pack}_ingest", run_type=["backfill"]):
            if run.get("run_type") == "backfill":
                states[run.get("state")] += 1
    return states


def settle(api: AirflowApi, watcher: Watcher, timeout: float) -> Counter:
    """Wait until every backfill run has finished (bounded; not at all without a scheduler),
    then count them by state."""
    deadline = time.monotonic() + timeout
    states: Counter = Counter()
    while True:
        with contextlib.suppress(Exception):  # SQLite's lock past the retries: ask again
            states = backfill_runs(api)
        open_runs = sum(n for state, n in states.items() if state not in TERMINAL)
        if (states and not open_runs) or watcher.scheduler_gone or time.monotonic() > deadline:
            print(f"\r  settle: {open_runs} backfill runs not finished", flush=True)
            return states
        print(f"\r  settle: {open_runs} backfill runs not finished ", end="", flush=True)
        time.sleep(5)


def bench_mode(mode: str, home: Path, workspace_at, test_config: Path,
               args: argparse.Namespace) -> dict:
    """One mode in a fresh stack under ``home``: its table row."""
    print(f"== {mode}: stack in {home}", flush=True)
    stack = start_stack(home, mode, test_config)
    watcher = Watcher(stack)
    watcher.start()
    try:
        replay_landing(home / "driftline", workspace_at)
        api = stack.api()
        for dag_id in UNPAUSED:
            api.wait_for_dag(dag_id)
            api.set_paused(dag_id, False)
        started = time.monotonic()
        outcome = run_creates(stack, api, watcher, args)
        states = settle(api, watcher, args.settle)
        wall = time.monotonic() - started
    finally:
        watcher.stop()
        stack.stop()
        from driftline.serving.bluegreen import stop_serving

        stop_serving(workspace_at(home / "driftline").settings)
    if outcome.stopped:
        print(f"  stopped early: {outcome.stopped}", flush=True)
    seconds = [c.seconds for c in outcome.creates] or [float("nan")]
    return {
        "mode": mode, "creates": len(outcome.creates), "failed": len(outcome.failed),
        "stuck": outcome.stuck, "scheduler_exits": watcher.exits["scheduler"],
        "triggerer_exits": watcher.exits["triggerer"], "success": states["success"],
        "runs_failed": states["failed"],
        "left_queued": sum(n for s, n in states.items() if s not in TERMINAL),
        "create_p50_s": round(statistics.median(seconds), 1),
        "create_max_s": round(max(seconds), 1), "wall_s": round(wall),
        "errors": [f"{c.dag_id} {c.start}..{c.end}: {c.error}" for c in outcome.failed],
        "stopped": outcome.stopped,
    }


COLUMNS = (("mode", "mode", "<9"), ("creates", "creates", ">7"), ("failed", "failed", ">6"),
           ("stuck", "stuck", ">5"), ("sched exits", "scheduler_exits", ">11"),
           ("trig exits", "triggerer_exits", ">10"), ("runs ok", "success", ">7"),
           ("runs failed", "runs_failed", ">11"), ("left queued", "left_queued", ">11"),
           ("create p50 s", "create_p50_s", ">12"), ("create max s", "create_max_s", ">12"),
           ("wall s", "wall_s", ">6"))


def print_table(rows: list[dict]) -> None:
    """One row per mode, then the error lines of the failed creates."""
    print(" ".join(f"{title:{fmt}}" for title, _, fmt in COLUMNS))
    for row in rows:
        print(" ".join(f"{row[key]:{fmt}}" for _, key, fmt in COLUMNS))
    for row in rows:
        for error in row["errors"]:
            print(f"{row['mode']}: {error}")


def load_test_helpers(root: Path):
    """``tests.helpers.workspace_at`` and ``TEST_CONFIG``, their session directory (the
    test configuration with a free router port) inside ``root``."""
    os.environ["DRIFTLINE_TEST_SESSION"] = str(root / "session")
    (root / "session").mkdir()
    from tests.helpers import TEST_CONFIG, workspace_at

    return workspace_at, TEST_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="stock,driftline",
                        help="comma-separated DRIFTLINE_SQLITE_LOCKING values")
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-failures", type=int, default=3)
    parser.add_argument("--settle", type=float, default=900.0,
                        help="seconds to wait at the end for the backfill runs to finish")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="dl-backfill-", dir="/tmp"))
    workspace_at, test_config = load_test_helpers(root)
    rows = []
    try:
        for mode in args.modes.split(","):
            row = bench_mode(mode, root / mode, workspace_at, test_config, args)
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
