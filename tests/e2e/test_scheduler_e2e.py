"""The whole loop through a real Airflow scheduler, triggerer, dag-processor and api-server, on
both shipped packs at once, on each tier: ``sqlite`` (LocalExecutor on SQLite) and
``postgres-celery`` (CeleryExecutor with two workers, PostgreSQL, Redis; started and stopped
here). The DAGs are the same on both.

Per pack: ingest (backfill) → manual train → gate → deploy → later data → monitor (backfill) →
retrain policy sensor in the triggerer → drift-triggered train → gate → deploy or refuse. Both
models then answer side by side behind the one router. Nothing here calls DAG code: every step goes
through Airflow's REST API and scheduler.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from driftline.landing import replay
from driftline.packs.timeline import iter_intervals
from driftline.registry import Registry
from driftline.scoring import request_rows
from driftline.serving.paths import router_url
from driftline.serving.probe import free_ports

from tests.helpers import (
    LOOPBACK,
    ROOT,
    TEST_CONFIG,
    group_pids,
    listening_sockets,
    workspace_at,
)

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import CELERY_WORKERS, AirflowStack, airflow_env
from services import running_services, services_of

pytestmark = [pytest.mark.e2e, pytest.mark.nginx]

TIERS = ["sqlite", pytest.param("postgres-celery", marks=[pytest.mark.postgres,
                                                          pytest.mark.redis])]
RECEIVED = re.compile(r"Task [\w.]+\[([0-9a-f-]{36})\] received")
"""A Celery worker's log line for a task it took from the broker (its Celery task id)."""
LOADED = re.compile(r"Loaded executor: :?(\w+)")
"""The scheduler's log line naming its executor."""

# (pack, history span, the later month monitored)
SCENARIOS = {
    "flights": ((dt.date(2013, 1, 1), dt.date(2013, 1, 24)),
                (dt.date(2013, 7, 1), dt.date(2013, 7, 7)), dt.date(2013, 7, 31)),
    "bikes": ((dt.date(2011, 1, 1), dt.date(2011, 6, 30)),
              (dt.date(2011, 9, 1), dt.date(2011, 9, 30)), dt.date(2011, 9, 30)),
}


@pytest.fixture(scope="module", params=TIERS)
def stack(request, tmp_path_factory):
    tier = request.param
    root = tmp_path_factory.mktemp(f"e2e-{tier}")
    api_port, worker_logs, trigger_logs = free_ports(3)
    extra = {
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        "DRIFTLINE_CONFIG": str(TEST_CONFIG),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "DRIFTLINE_PRELOAD": "1",
    }
    if tier == "sqlite":  # the session's own SQLite database is in the inherited environment
        extra["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{root}/airflow/airflow.db"
    env = airflow_env(ROOT, root / "airflow", root / "driftline", port=api_port, extra=extra,
                      tier=tier)
    stack = AirflowStack(env)
    stack.init()
    stack.start()
    try:
        # seven processes (nine with the Celery workers) importing Airflow at once take
        # minutes on 2 busy cores
        stack.wait_healthy(timeout=600)
        yield stack, root / "driftline"
    finally:
        stack.stop()
        assert running_services(stack.home) == {}, "PostgreSQL or Redis left running"
        from driftline.serving.bluegreen import stop_serving

        stop_serving(workspace_at(root / "driftline").settings)
        for log in sorted((root / "airflow" / "logs").glob("*.log")):
            if os.environ.get("DRIFTLINE_E2E_LOGS"):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def _ingest(api, ws, start: dt.date, end: dt.date) -> list[dict]:
    replay(ws, start, end)
    dag = f"{ws.name}_ingest"
    api.backfill(dag, str(start), str(end), max_active_runs=4)
    return api.wait_runs(dag, {str(d) for d in iter_intervals(start, end, ws.pack.interval)},
                         timeout=900)


def _drift_train_run(api, dag: str, report_id: str) -> dict:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = next((r for r in api.runs(dag)
                    if (r.get("conf") or {}).get("drift_report_id") == report_id), None)
        if run:
            return api.wait_run(dag, run["dag_run_id"], timeout=600)
        time.sleep(3)
    raise AssertionError(f"the retrain policy sensor did not trigger {dag} for {report_id}")


def _loop(api, ws) -> dict:
    """One pack's whole loop; returns what the test asserts on."""
    (start, end), (later, later_end), month_end = SCENARIOS[ws.name]
    for stage in ("ingest", "train", "monitor", "retrain_on_drift"):
        api.wait_for_dag(f"{ws.name}_{stage}")
    runs = _ingest(api, ws, start, end)
    assert {r["state"] for r in runs} == {"success"}, runs

    train = f"{ws.name}_train"
    api.set_paused(train, False)
    run_id = api.trigger(train, {"window_start": str(start), "window_end": str(end),
                                 "reason": f"e2e {ws.name} v1"})
    assert api.wait_run(train, run_id, timeout=600)["state"] == "success"
    registry = Registry(ws.registry_dir, ws.model_name)
    v1 = registry.champion().version

    api.set_paused(f"{ws.name}_retrain_on_drift", False)
    _ingest(api, ws, later, later_end)
    month = later.replace(day=1)
    api.backfill(f"{ws.name}_monitor", str(month), str(month), max_active_runs=1)
    (monitor,) = api.wait_runs(f"{ws.name}_monitor", {str(month)}, timeout=600)
    assert monitor["state"] == "success"
    report_id = f"drift_{month}_{month_end}"
    summary = json.loads((ws.reports_dir / "drift" / report_id / "summary.json").read_text())
    assert summary["crossed"], summary
    assert summary["pack"] == ws.name

    finished = _drift_train_run(api, train, report_id)
    states = {t["task_id"]: t["state"]
              for t in api.task_instances(train, finished["dag_run_id"])}
    assert states["train"] == "success"
    claim = json.loads((ws.reports_dir / "retrain" / f"{month}_{month_end}.json").read_text())
    assert claim["by"].startswith("scheduled__"), claim  # the @continuous sensor's run
    assert claim["drift_report_id"] == report_id and "drift" in claim["rules"], claim
    assert finished["conf"]["reason"] == claim["reason"]
    return {"v1": v1, "v1_run": run_id, "finished": finished, "states": states,
            "registry": registry, "report_id": report_id}


@pytest.fixture(scope="module")
def loops(stack):
    """Both packs' whole loop, bikes first; what the tests assert on, per pack."""
    stack, home = stack
    api = stack.api()
    flights, bikes = workspace_at(home, "flights"), workspace_at(home, "bikes")
    return {"bikes": _loop(api, bikes), "flights": _loop(api, flights),
            "workspaces": {"flights": flights, "bikes": bikes}}


def test_both_packs_run_the_whole_loop_through_the_real_scheduler(loops):
    bikes_result, flights_result = loops["bikes"], loops["flights"]
    flights, bikes = loops["workspaces"]["flights"], loops["workspaces"]["bikes"]
    # bikes: September against a Jan-Jun reference retrains, and the autumn model wins
    assert bikes_result["finished"]["state"] == "success", bikes_result["states"]
    bikes_v2 = bikes_result["registry"].champion().version
    assert bikes_v2 != bikes_result["v1"]

    registry = flights_result["registry"]
    # flights: July's drift retrains on 1-2 July (3-7 July held out); measured, that model
    # ranks July worse than the January champion (AUC drop 0.023, limit 0.01) and is less
    # calibrated (log loss +0.099, limit 0.02): the gate refuses it and the live model stays
    states = flights_result["states"]
    assert flights_result["finished"]["state"] == "failed", states
    assert states["gate"] == "failed" and states["deploy"] == "upstream_failed", states
    assert registry.champion().version == flights_result["v1"]
    refused = registry.events()[-1]
    assert refused["event"] == "refused" and refused["version"] != flights_result["v1"]
    failed = [part.split(" = ")[0] for part in refused["reason"].split("; ")]
    assert failed == ["AUC drop vs champion", "log loss increase vs champion"], refused

    # both live side by side behind the one router, each answering with its own model
    # (the flights deploys above did not touch the bikes slots)
    assert Registry(bikes.registry_dir, "bikes").champion().version == bikes_v2
    for ws, source_day in ((flights, dt.date(2013, 7, 2)), (bikes, dt.date(2011, 9, 2))):
        rows = ws.pack.load_source()
        day = rows[ws.pack.local_dates(rows[ws.pack.time_column]) == source_day].head(3)
        body = httpx.post(f"{router_url(ws.settings, ws.name)}/predict",
                          json={"rows": request_rows(ws.pack, day)}, timeout=10).json()
        live = Registry(ws.registry_dir, ws.model_name).champion().version
        assert (body["pack"], body["model_version"]) == (ws.name, live)
        assert len(body["predictions"]) == 3


def _succeeded(stack) -> list[str | None]:
    """From the stack's own metadata database: the executor's id (Celery's task id) of
    every task instance that succeeded."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as db:
            return list(db.execute(text(
                "SELECT external_executor_id FROM task_instance WHERE state = 'success'"
            )).scalars())
    finally:
        engine.dispose()


def test_each_tier_ran_on_its_own_database_and_executor(stack, loops):
    """The loop above ran on the tier's own metadata database, through its executor; on
    postgres-celery every task that succeeded went through one of the two Celery workers,
    both took tasks, and nothing (PostgreSQL and Redis included) listens beyond loopback or
    writes their passwords into a log."""
    stack, _ = stack
    ran = _succeeded(stack)
    executors = set(LOADED.findall((stack.log_dir / "scheduler.log").read_text()))
    assert len(ran) > 50, ran  # both packs' backfills, trains, monitors
    conn = stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    leaders = list(stack.pids().values())
    listening = listening_sockets(group_pids(leaders))
    assert ("0100007F", stack.port) in listening
    assert {a for a, _ in listening} <= LOOPBACK, f"listening beyond loopback: {listening}"
    if stack.tier == "sqlite":
        assert conn == f"sqlite:///{stack.home}/airflow.db"
        assert executors == {"LocalExecutor"} and set(ran) == {None}
        assert not (stack.home / "postgres").exists()
        return
    services = services_of(stack.home)
    assert conn == services.sql_alchemy_conn and not (stack.home / "airflow.db").exists()
    assert executors == {"CeleryExecutor"}
    assert {("0100007F", services.postgres_port), ("0100007F", services.redis_port)} \
        <= listening
    received = {n: set(RECEIVED.findall((stack.log_dir / f"celery-worker-{n}.log").read_text()))
                for n in range(1, CELERY_WORKERS + 1)}
    assert all(received.values()), {n: len(ids) for n, ids in received.items()}
    assert set(ran) <= set().union(*received.values())
    secrets = (services.postgres_password, services.redis_password)
    for log in stack.log_dir.rglob("*"):
        if log.is_file():
            text = log.read_text(errors="replace")
            assert not any(secret in text for secret in secrets), log


@pytest.mark.browser
def test_a_person_finds_the_whole_story_in_the_airflow_ui(stack, loops, tmp_path):
    """In a real browser, from the Airflow UI alone: why the last flights retrain happened,
    what the gate measured, which version serves, and the drift report behind it."""
    from tests.browser import browser_page, log_in

    stack, _ = stack
    api = stack.api()
    flights = loops["flights"]
    registry = flights["registry"]
    v1, refused = flights["v1"], registry.events()[-1]["version"]
    report_id, retrain_run = flights["report_id"], flights["finished"]["dag_run_id"]
    shots = [Path(tmp_path)] + ([Path(os.environ["DRIFTLINE_SCREENSHOTS"])]
                                if os.environ.get("DRIFTLINE_SCREENSHOTS") else [])

    def shoot(page, name: str) -> None:
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    with browser_page() as page:
        page.goto(f"{stack.url}/driftline/")
        assert "/auth/login" in page.url  # anonymous: Airflow's own login page first
        log_in(page, stack.user, stack.password)
        assert page.url == f"{stack.url}/driftline/"
        rows = {row.locator("td").first.inner_text(): row.inner_text()
                for row in page.locator("#packs tr").all()[1:]}
        assert set(rows) == {"flights", "bikes"}
        assert "REFUSED" in rows["flights"] and f"{refused} vs {v1}" in rows["flights"]
        bikes_live = Registry(loops["workspaces"]["bikes"].registry_dir,
                              "bikes").champion().version
        assert rows["bikes"].split("\t")[2] == bikes_live
        assert f"the last gate refused {refused}" in page.locator("#attention").inner_text()
        shoot(page, "index")

        page.click("#packs >> text=flights")
        page.wait_for_url("**/driftline/packs/flights")
        # which version serves, and the model history plotted with the champion marked
        assert v1 in page.locator("#summary .card").first.inner_text()
        points = page.locator("svg.models circle")
        assert points.count() == len(registry.versions())
        assert page.locator("svg.models circle.marked").count() == 1
        assert page.locator("svg.drift line.threshold").count() == 1
        # why the last retrain happened: the drift report, linked to its per-column view
        why = page.locator("#lineage tr", has_text=refused)
        assert f"drift report {report_id}" in why.inner_text()
        assert why.locator(f"a[href='#drift-{report_id}']").count() == 1
        assert page.locator(f"#drift-{report_id} svg.columns rect.flagged").count() >= 1
        # each lineage step links to the Airflow run it came from
        first = page.locator(f"#model-{v1}")
        assert first.locator("a", has_text="ingest run").count() == 1
        assert quote(flights["v1_run"], safe="") in first.locator(
            "a", has_text=flights["v1_run"]).get_attribute("href")
        # what the gate measured: the refused verdict's checks with the failed ones named
        gate = page.locator(f"#gate-{refused} + p + table")
        assert "AUC drop vs champion" in gate.inner_text() and "FAILED" in gate.inner_text()
        stage_cells = page.locator("#stage-times tr").nth(1).locator("td").all_inner_texts()
        assert len(stage_cells) == 6 and all(c.endswith(" s") for c in stage_cells), stage_cells
        shoot(page, "flights")

        # the drift report behind it, served by the plugin
        report_link = page.locator(f"#drift-{report_id} a.report").first
        with page.expect_navigation():
            report_link.click()
        assert page.url.endswith(f"/driftline/reports/flights/drift/{report_id}/lake.html")
        page.wait_for_timeout(2000)
        shoot(page, "drift-report")

        # the gate task's extra link (Airflow's own API, as its UI reads it) opens its report
        href = api.extra_links("flights_train", retrain_run, "gate")["driftline report"]
        assert href.endswith("/verdict.html") and "/driftline/reports/flights/gates/" in href
        response = page.goto(f"{stack.url}{href}")
        verdict = loops["workspaces"]["flights"].reports_dir / href.split(
            "/driftline/reports/flights/", 1)[1]
        assert response.status == 200 and response.body() == verdict.read_bytes()
        assert "AUC drop vs champion" in page.inner_text("table")
        with page.expect_navigation():
            page.click("a[href='quality.html']")  # the verdict links Evidently's report
        assert page.url.endswith("/quality.html")
        page.wait_for_timeout(2000)
        assert page.locator("svg").count() > 0  # Evidently's own scripts drew its charts
        shoot(page, "gate-report")

        page.goto(f"{stack.url}/driftline/packs/bikes")
        assert page.locator("svg.models circle").count() == 2
        assert page.locator("#serving-history tr").count() >= 3  # header + two deploys
        shoot(page, "bikes")
