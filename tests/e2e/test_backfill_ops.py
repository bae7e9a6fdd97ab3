"""Ops teams backfill with Airflow's own tools on the embedded default (SQLite,
LocalExecutor), and the stack survives it and says when a component is down.

The crash this guards against: five ``airflow backfill create`` calls over July 2013 with the
ingest DAG unpaused; on stock SQLite the first failed with ``database is locked`` part-way,
Airflow deleted the runs it had already committed, and the scheduler exited on them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from driftline.landing import replay
from driftline.serving.probe import free_ports

from tests.helpers import ROOT, TEST_CONFIG, workspace_at

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import AirflowStack, airflow_env

pytestmark = pytest.mark.e2e

DAG = "flights_ingest"
JULY = [("2013-07-01", "2013-07-06"), ("2013-07-07", "2013-07-12"),
        ("2013-07-13", "2013-07-18"), ("2013-07-19", "2013-07-24"),
        ("2013-07-25", "2013-07-31")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("backfill-ops")
    [api_port] = free_ports(1)
    env = airflow_env(ROOT, root / "airflow", root / "driftline", port=api_port, extra={
        "DRIFTLINE_CONFIG": str(TEST_CONFIG),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root}/airflow/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "DRIFTLINE_PRELOAD": "1",
    })
    stack = AirflowStack(env)
    stack.init()
    stack.start()
    try:
        stack.wait_healthy()
        stack.start_watchdog()
        replay(workspace_at(root / "driftline", "flights"), dt.date(2013, 7, 1),
               dt.date(2013, 8, 31))
        stack.api().wait_for_dag(DAG)
        yield stack
    finally:
        stack.stop()
        if os.environ.get("DRIFTLINE_E2E_LOGS"):
            for log in sorted((root / "airflow" / "logs").glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def airflow_cli(stack: AirflowStack, *args: str) -> subprocess.CompletedProcess:
    """The ``airflow`` command as an ops team runs it against this stack."""
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=stack.env,
                          capture_output=True, text=True, timeout=600)


def wait_backfill_closed(api, dag_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(b["completed_at"] for b in api.backfills(dag_id)):
            return
        time.sleep(2)
    raise TimeoutError(f"{dag_id}: a backfill still open after {timeout}s")


def days(start: str, end: str) -> set[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return {str(first + dt.timedelta(n)) for n in range((last - first).days + 1)}


def test_five_cli_backfills_over_july_with_the_dag_unpaused_keep_the_scheduler_alive(stack):
    api = stack.api()
    unpaused = airflow_cli(stack, "dags", "unpause", DAG)
    assert unpaused.returncode == 0, unpaused.stderr[-2000:]
    wait_backfill_closed(api, DAG)  # another test's backfill (one open backfill per DAG)
    scheduler = stack.running()["scheduler"]
    restarts = stack.watchdog_state().get("scheduler", {}).get("restarts", 0)
    for start, end in JULY:
        created = airflow_cli(stack, "backfill", "create", "--dag-id", DAG, "--from-date",
                              start, "--to-date", end, "--max-active-runs", "4")
        assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
        wait_backfill_closed(api, DAG)
    runs = api.wait_runs(DAG, days("2013-07-01", "2013-07-31"), timeout=900)
    assert {r["logical_date"][:10]: r["state"] for r in runs} == {
        d: "success" for d in days("2013-07-01", "2013-07-31")}
    assert all(r["run_type"] == "backfill" for r in runs)
    assert stack.running().get("scheduler") == scheduler, "the scheduler exited"
    assert stack.watchdog_state().get("scheduler", {}).get("restarts", 0) == restarts

    # rerun one day, as the README says: clear it; the same run runs again and succeeds
    cleared = airflow_cli(stack, "tasks", "clear", DAG, "--start-date", "2013-07-03",
                          "--end-date", "2013-07-03", "--yes")
    assert cleared.returncode == 0, cleared.stderr[-2000:]
    run_id = next(r["dag_run_id"] for r in runs if r["logical_date"][:10] == "2013-07-03")
    deadline = time.monotonic() + 300
    while api.run(DAG, run_id)["state"] == "success" and time.monotonic() < deadline:
        time.sleep(1)  # until the scheduler has taken up the cleared run
    assert api.wait_run(DAG, run_id, timeout=600)["state"] == "success"
    tries = {t["task_id"]: t["try_number"] for t in api.task_instances(DAG, run_id)}
    assert tries and all(n >= 2 for n in tries.values()), tries

    # what a backfill did, as the README says
    listed = airflow_cli(stack, "dags", "list-runs", DAG, "--output", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    listed_runs = json.loads(listed.stdout.strip().splitlines()[-1])  # after Airflow's warnings
    assert {r["logical_date"][:10] for r in listed_runs} >= days(
        "2013-07-01", "2013-07-31")


def test_a_rest_backfill_of_a_paused_dag_waits_visibly_and_runs_once_unpaused(stack):
    api = stack.api()
    api.set_paused(DAG, True)
    wait_backfill_closed(api, DAG)
    response = api.client.post("/backfills", json={
        "dag_id": DAG, "from_date": "2013-08-01T00:00:00Z", "to_date": "2013-08-03T00:00:00Z",
        "max_active_runs": 2, "reprocess_behavior": "completed"})
    assert response.status_code == 200, response.text
    token = api.client.headers["Authorization"]
    overview = httpx.get(f"{stack.url}/driftline/api/overview", timeout=60,
                         headers={"Authorization": token}).json()["airflow"]
    assert overview["paused_backfill_runs"] == {DAG: 3}
    assert any(DAG in line and "paused" in line for line in overview["attention"])
    page = httpx.get(f"{stack.url}/driftline/", timeout=60, headers={"Authorization": token})
    assert "Needs attention" in page.text and "unpause it" in page.text

    api.set_paused(DAG, False)
    runs = api.wait_runs(DAG, days("2013-08-01", "2013-08-03"), timeout=600)
    assert [r["state"] for r in runs] == ["success"] * 3


def test_a_dead_component_is_named_and_the_watchdog_restarts_it(stack):
    """With the watchdog stopped a killed triggerer is reported down by name; the watchdog
    then brings it back, and restarts a ``kill -9``-ed scheduler by itself."""
    watchdog = stack.running()["watchdog"]
    os.killpg(watchdog, signal.SIGTERM)
    while "watchdog" in stack.running():
        time.sleep(0.2)
    os.kill(stack.running()["triggerer"], signal.SIGKILL)
    while "triggerer" in stack.running():
        time.sleep(0.2)
    assert stack.health()["triggerer"] == "down"
    with pytest.raises(TimeoutError, match="triggerer down"):
        stack.wait_healthy(timeout=3)

    before = stack.watchdog_state()
    stack.start_watchdog()
    scheduler = stack.running()["scheduler"]
    os.kill(scheduler, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = stack.running()
        if "triggerer" in alive and alive.get("scheduler", scheduler) != scheduler:
            break
        time.sleep(0.5)
    assert stack.running().get("scheduler", scheduler) != scheduler, "scheduler not restarted"
    states = stack.wait_healthy(timeout=180)
    assert set(states.values()) == {"healthy"}
    after = stack.watchdog_state()
    for name in ("triggerer", "scheduler"):
        assert after[name]["restarts"] == before.get(name, {}).get("restarts", 0) + 1
    log = (stack.log_dir / "watchdog.log").read_text()
    assert "restarted scheduler" in log and "restarted triggerer" in log
