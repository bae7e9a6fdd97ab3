"""``dag.test()`` of every pack's DAGs on real data, real DVC, real model servers and nginx:
every DAG of the flights pack, and the bikes pack's monthly ingest and train → gate → deploy."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from driftline.landing import replay
from driftline.registry import Registry
from driftline.versioning import DataRepo

from tests.helpers import settings_at, workspace_at

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
# measured: v0001 (trained on Jan 1-19, tests/driftline-test.toml) against all of January
RECORDED_JANUARY_DRIFT = ["temp", "dewp", "wind_gust"]
needs_nginx = pytest.mark.nginx


@pytest.fixture(scope="module", autouse=True)
def dagbag(airflow_db):
    """The DAG folder parses cleanly (and the metadata database exists) before any run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


def serving_home(home: Path, monkeypatch):
    """Point the DAGs' operators at ``home``; afterwards stop every pack's slots and the
    router it started."""
    monkeypatch.setenv("DRIFTLINE_HOME", str(home))
    yield home
    from driftline.serving.bluegreen import stop_serving

    stop_serving(settings_at(home))


@pytest.fixture
def home(home_copy, monkeypatch):
    """A private driftline home (flights data, v0001 registered) that the DAGs use."""
    yield from serving_home(home_copy, monkeypatch)


@pytest.fixture
def bikes_home(bikes_data_home, tmp_path, monkeypatch):
    """A private copy of the bikes data home (Jan-Jun 2011 ingested, no model yet)."""
    target = tmp_path / "bikes-home"
    shutil.copytree(bikes_data_home, target, symlinks=True)
    yield from serving_home(target, monkeypatch)


def fresh_dag(dag_id: str):
    """``dag_id`` from a new parse of the DAG file, as a worker gets it: Airflow writes a
    run's conf into the Params of the task objects (a deep copy of the DAG shares them), so
    a second run of the same objects would start from the first run's values."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR / "driftline_packs.py")).get_dag(dag_id)


def run(dag_id: str, **kwargs) -> tuple[str, dict[str, str], str]:
    """``dag.test()`` of ``dag_id``: the run's state, each task's state, the run id."""
    from airflow.utils.session import create_session

    dag = fresh_dag(dag_id)
    dag_run = dag.test(**kwargs)
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances(session=session)}
    return dag_run.state, states, dag_run.run_id


def asset_events(asset_name: str, run_id: str) -> list[dict]:
    """The extras of the events ``run_id`` published on ``asset_name``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == asset_name, AssetEvent.source_run_id == run_id).all())
        return [dict(r.extra) for r in rows]


def xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    """The XCom ``key`` (default: the return value) ``task_id`` pushed in ``run_id``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id,
                                                 task_ids=task_id, key=key)).one()
        return XComModel.deserialize_value(row)


def triggered_train_run(retrain_run_id: str) -> tuple[str, dict]:
    """The ``flights_train`` run that ``retrain_run_id`` started: its id and conf."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    train_run_id = xcom("flights_retrain_on_drift", retrain_run_id, "trigger_retraining",
                        key="trigger_run_id")
    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id="flights_train",
                                                  run_id=train_run_id).one()
        return dag_run.run_id, dict(dag_run.conf)


def dag_run_ids(dag_id: str) -> set[str]:
    """The ids of ``dag_id``'s runs in the session's Airflow database now (earlier tests'
    runs are there too: a test leaves them out)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return {run_id for (run_id,) in
                session.query(DagRun.run_id).filter_by(dag_id=dag_id).all()}


def operator_triggered_train_confs(report_id: str, earlier: set[str]) -> list[dict]:
    """The confs of the ``flights_train`` runs, other than the ``earlier`` ones, that a DAG's
    operator started for ``report_id``."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    with create_session() as session:
        runs = session.query(DagRun).filter_by(
            dag_id="flights_train", triggered_by=DagRunTriggeredByType.OPERATOR).all()
        return [r.conf for r in runs if r.run_id not in earlier
                and (r.conf or {}).get("drift_report_id") == report_id]


def interval_ending(day: dt.date) -> dt.datetime:
    """The logical date of a manual daily run whose data interval is ``day``: Airflow gives
    a manual run the interval that ends at its logical date."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)


def slug(run_id: str) -> str:
    """The per-run report directory name, written out independently of the operator's."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


# -- flights: every DAG ------------------------------------------------------------------------
def test_ingest_writes_a_versioned_partition_and_publishes_its_version(home, flights):
    ws = workspace_at(home)
    day = dt.date(2013, 1, 25)
    replay(ws, day, day, source=flights)
    state, tasks, run_id = run("flights_ingest", logical_date=interval_ending(day))
    assert state == "success", tasks
    repo = DataRepo.of(ws)
    assert day in repo.list_days(repo.head())
    (event,) = asset_events("driftline_flights_data", run_id)
    expected_rows = int(((flights["month"] == 1) & (flights["day"] == 25)).sum())
    assert event["day"] == "2013-01-25" and event["data_version"] == repo.head()
    assert event["rows"] == expected_rows and expected_rows > 900
    assert asset_events("driftline_bikes_data", run_id) == []


def test_a_bad_landing_file_is_quarantined_and_fails_the_run_without_retrying(home,
                                                                               flights):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    ws = workspace_at(home)
    day = dt.date(2013, 1, 26)
    replay(ws, day, day, source=flights)
    path = ws.landing_path(day)
    lines = path.read_text().splitlines()
    drop = lines[0].split(",").index("dest")
    path.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop)
                              for line in lines))
    head_before = DataRepo.of(ws).head()

    state, tasks, run_id = run("flights_ingest", logical_date=interval_ending(day))
    assert state == "failed" and tasks["ingest_partition"] == "failed"
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id="flights_ingest", run_id=run_id,
                                                   task_id="ingest_partition").one()
        assert ti.try_number == 1  # retries=2, but a bad file is not retried
    reason = json.loads((ws.quarantine_dir / f"{path.name}.reason.json").read_text())
    assert reason["pack"] == "flights"
    assert reason["failed"] == ["required column present on column 'dest' FAILED: measured "
                                "missing, limit present"]
    assert not path.exists() and (ws.quarantine_dir / path.name).exists()
    repo = DataRepo.of(ws)
    assert repo.head() == head_before and day not in repo.list_days(repo.head())


def test_the_landing_sensor_waits_for_the_file_then_ingests_it(home, flights):
    """The sensor reschedules itself (releasing its worker slot) while the file is missing,
    nothing downstream runs; once the file lands the next poke finds it and ingest runs."""
    from airflow.models import DagRun, TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    ws = workspace_at(home)
    day = dt.date(2013, 1, 27)
    assert not ws.landing_path(day).exists()
    repo = DataRepo.of(ws)
    seen: dict = {}
    earlier = dag_run_ids("flights_ingest")  # this test's run is the one not among them

    def look() -> tuple[dict, list]:
        with create_session() as session:
            dag_run = (session.query(DagRun).filter_by(dag_id="flights_ingest")
                       .filter(DagRun.logical_date == interval_ending(day),
                               DagRun.run_id.not_in(earlier)).one_or_none())
            if dag_run is None:
                return {}, []
            tis = {ti.task_id: ti for ti in session.query(TaskInstance).filter_by(
                dag_id="flights_ingest", run_id=dag_run.run_id)}
            sensor = tis.get("wait_for_landing_file")
            asks = (session.query(TaskReschedule).filter_by(ti_id=sensor.id).all()
                    if sensor else [])
            return ({k: v.state for k, v in tis.items()},
                    [(a.id, a.start_date, a.reschedule_date) for a in asks])

    def upstream():
        """While the run waits: record what it looks like, then drop the file and let the
        clock reach the sensor's next poke (60 s) at once."""
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                states, asks = look()
                if states.get("wait_for_landing_file") == "up_for_reschedule" and asks:
                    seen.update(states=states, asks=asks,
                                days=repo.list_days(repo.head()))
                    break
                time.sleep(0.5)
        finally:
            replay(ws, day, day, source=flights)
            _, asks = look()
            with create_session() as session:
                for ask_id, *_ in asks:
                    session.get(TaskReschedule, ask_id).reschedule_date = dt.datetime.now(dt.UTC)

    feed = threading.Thread(target=upstream)
    feed.start()
    try:  # dag.test() in the main thread: the task runner installs signal handlers
        state, tasks, run_id = run("flights_ingest", logical_date=interval_ending(day))
    finally:
        feed.join()
    assert seen, "the sensor never waited for the missing file"
    assert seen["states"] == {"wait_for_landing_file": "up_for_reschedule",
                              "ingest_partition": None}
    ((_, poked_at, due_at),) = seen["asks"]
    assert dt.timedelta(seconds=59) <= due_at - poked_at <= dt.timedelta(seconds=61)
    assert day not in seen["days"]
    assert state == "success", tasks
    assert day in repo.list_days(repo.head())
    (event,) = asset_events("driftline_flights_data", run_id)
    assert event["day"] == "2013-01-27"


@needs_nginx
def test_train_gates_and_deploys_then_refuses_a_worse_candidate(home):
    from driftline.serving.bluegreen import BlueGreen

    ws = workspace_at(home)
    conf = {"window_start": "2013-01-01", "window_end": "2013-01-24", "reason": "dag test"}
    state, tasks, run_id = run("flights_train", run_conf=conf)
    assert state == "success", tasks
    registry = Registry(ws.registry_dir, ws.model_name)
    champion = registry.champion()
    live = BlueGreen(ws).status()
    assert live["slots"][live["live"]]["version"] == champion.version
    (event,) = asset_events("driftline_flights_champion", run_id)
    assert (event["version"], event["metric"]) == (champion.version, "auc")

    weak = {**conf, "reason": "weak", "hyperparameters": {"num_boost_round": 1, "max_depth": 1}}
    state, tasks, run_id = run("flights_train", run_conf=weak)
    assert state == "failed"
    assert tasks["gate"] == "failed" and tasks["deploy"] == "upstream_failed"
    assert registry.champion().version == champion.version
    refused = [e for e in registry.events() if e["event"] == "refused"]
    assert len(refused) == 1 and "AUC drop vs champion" in refused[0]["reason"]
    # the verdict and its reports are kept per run: reports/<pack>/gates/<dag>/<run>/
    report_dir = home / "reports" / "flights" / "gates" / "flights_train" / slug(run_id)
    assert refused[0]["report_dir"] == str(report_dir)
    assert {"verdict.json", "quality.html", "drift.html"} <= {p.name for p in
                                                              report_dir.iterdir()}
    verdict = json.loads((report_dir / "verdict.json").read_text())
    assert verdict["passed"] is False and verdict["reason"] == refused[0]["reason"]
    assert BlueGreen(ws).status()["live"] == live["live"]


def test_monitor_writes_the_months_drift_report(home, flights, flights_pack):
    ws = workspace_at(home)
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "t")
    # a manual run's interval is the one ending at its logical date: January
    state, tasks, run_id = run("flights_monitor",
                               logical_date=dt.datetime(2013, 2, 1, tzinfo=dt.UTC))
    assert state == "success", tasks
    assert tasks["drift_report"] == "success"
    summary = json.loads((ws.reports_dir / "drift" / "drift_2013-01-01_2013-01-31" /
                          "summary.json").read_text())
    lake = summary["datasets"]["lake"]
    january = int(((flights["month"] == 1) & (flights["day"] <= 24)).sum())  # all ingested
    assert summary["model_version"] == "v0001" and lake["rows"] == january
    # the recorded figure: 3 of the pack's 16 features drift
    assert lake["drifted"] == RECORDED_JANUARY_DRIFT
    assert summary["share"] == len(lake["drifted"]) / len(flights_pack.features) == 3 / 16
    assert summary["crossed"] is False  # threshold 0.4 (tests/driftline-test.toml)
    (event,) = asset_events("driftline_flights_drift_reports", run_id)
    assert event == {"report_id": "drift_2013-01-01_2013-01-31", "share": 3 / 16,
                     "threshold": 0.4, "crossed": False}
    # the task instance's "driftline report" extra link opens the report it wrote
    assert xcom("flights_monitor", run_id, "drift_report", key="_link_DriftlineReportLink") == (
        "/driftline/reports/flights/drift/drift_2013-01-01_2013-01-31/lake.html")


def test_monitor_skips_while_no_model_is_live(home):
    _, tasks, run_id = run("flights_monitor",
                           logical_date=dt.datetime(2013, 2, 1, tzinfo=dt.UTC))
    assert tasks["drift_report"] == "skipped"
    assert asset_events("driftline_flights_drift_reports", run_id) == []


def write_report(home: Path, start: str, end: str, share: float) -> Path:
    report = home / "reports" / "flights" / "drift" / f"drift_{start}_{end}"
    report.mkdir(parents=True)
    (report / "summary.json").write_text(json.dumps({
        "report_id": report.name, "start": start, "end": end, "share": share,
        "threshold": 0.4, "crossed": share >= 0.4, "data_version": "abc1234"}))
    return report


def claim_of(home: Path, start: str, end: str) -> dict:
    """The retrain policy's claim record of an interval."""
    return json.loads((home / "reports" / "flights" / "retrain" / f"{start}_{end}.json")
                      .read_text())


def test_retrain_policy_claims_a_crossing_interval_once_and_trains_with_it_as_the_reason(home):
    earlier = dag_run_ids("flights_train")
    june = write_report(home, "2013-06-01", "2013-06-30", 0.6)
    state, tasks, run_id = run("flights_retrain_on_drift")
    assert state == "success", tasks
    reason = ("retrain policy: drift rule: drift report drift_2013-06-01_2013-06-30 share "
              "0.600 >= 0.4")
    claim = claim_of(home, "2013-06-01", "2013-06-30")
    assert (claim["by"], claim["reason"], claim["rules"]) == (run_id, reason, ["drift"])
    _, conf = triggered_train_run(run_id)
    assert conf == {"reason": reason, "drift_report_id": june.name, "quality_report_id": "",
                    "window_end": "2013-06-30"}

    # the train DAG plans with that conf: the report is the reason (train, gate and deploy
    # are marked done: their own tests run them)
    state, tasks, train_run_id = run("flights_train", run_conf=conf,
                                     mark_success_pattern="train|gate|deploy")
    assert state == "success" and tasks["plan"] == "success", tasks
    # June is not ingested: the window ends at the newest partition, 24 days long
    assert xcom("flights_train", train_run_id, "plan") == {
        "pack": "flights", "data_version": DataRepo.of(workspace_at(home)).head(),
        "start": "2013-01-01", "end": "2013-01-24", "params": {}, "reason": reason,
        "trigger": "drift"}

    # never twice, and no second retrain while one is active: June's triggered train run is
    # still queued (dag.test() has no scheduler to run it), so July's crossing waits, not
    # claimed, until that run ends; then it is claimed and trains
    queued_run_id, _ = triggered_train_run(run_id)
    july = write_report(home, "2013-07-01", "2013-07-31", 0.5)
    earlier_retrains = dag_run_ids("flights_retrain_on_drift")
    seen: dict = {"states": []}

    def end_the_queued_retrain():
        """Once the sensor has looked while June's run was active (it deferred, or resumed
        from its trigger: dag.test() runs the trigger inline with the task queued, so the
        deferred state lasts milliseconds, but next_method stays), record whether July was
        claimed, then end June's run. The sensor then waits busy_recheck_s (30 s) before it
        looks again, so the record is made while it waits."""
        from airflow.models import DagRun, TaskInstance
        from airflow.utils.session import create_session

        try:
            deadline = time.monotonic() + 420
            while time.monotonic() < deadline and "looked" not in seen:
                with create_session() as session:
                    looks = [(ti.state, ti.next_method) for ti in session.query(
                        TaskInstance).filter(
                        TaskInstance.dag_id == "flights_retrain_on_drift",
                        TaskInstance.task_id == "wait_for_retrain_policy",
                        TaskInstance.run_id.not_in(earlier_retrains))]
                if looks and looks[-1] != (seen["states"] or [None])[-1]:
                    seen["states"].append(looks[-1])
                if any(state in ("success", "failed") for state, _ in looks):
                    break  # it ended without waiting: the assertion below says so
                if any(state == "deferred" or method == "execute_complete"
                       for state, method in looks):
                    time.sleep(2)
                    seen["looked"] = True
                    seen["july_claimed"] = (home / "reports" / "flights" / "retrain" /
                                            "2013-07-01_2013-07-31.json").exists()
                time.sleep(0.2)
        finally:
            with create_session() as session:
                session.query(DagRun).filter_by(dag_id="flights_train",
                                                run_id=queued_run_id).one().state = "failed"

    ender = threading.Thread(target=end_the_queued_retrain)
    ender.start()
    try:  # dag.test() in the main thread: the task runner installs signal handlers
        state, tasks, second = run("flights_retrain_on_drift")
    finally:
        ender.join()
    assert (seen.get("looked"), seen.get("july_claimed")) == (True, False), seen
    assert state == "success", tasks
    assert claim_of(home, "2013-06-01", "2013-06-30")["by"] == run_id
    assert claim_of(home, "2013-07-01", "2013-07-31")["by"] == second
    assert triggered_train_run(second)[1]["drift_report_id"] == july.name
    assert len(operator_triggered_train_confs(june.name, earlier)) == 1


@needs_nginx
def test_rollback_dag_switches_back_and_moves_the_champion(home):
    from driftline.serving.bluegreen import BlueGreen
    from driftline.training import train

    ws = workspace_at(home)
    registry = Registry(ws.registry_dir, ws.model_name)
    head = DataRepo.of(ws).head()
    v2 = train(ws, head, dt.date(2013, 1, 1), dt.date(2013, 1, 24),
               params={"max_depth": 4})["version"]
    serving = BlueGreen(ws)
    for version in ("v0001", v2):
        serving.deploy(registry.get(version), "test")
        registry.set_alias("champion", version, "test")

    state, tasks, _ = run("flights_rollback", run_conf={"reason": "bad latency"})
    assert state == "success", tasks
    status = BlueGreen(ws).status()
    assert status["slots"][status["live"]]["version"] == "v0001"
    assert registry.champion().version == "v0001"
    assert registry.events()[-1]["reason"] == "rollback: bad latency"


# -- bikes: a monthly regression pack -----------------------------------------------------------
def test_bikes_ingest_versions_one_monthly_interval(tmp_path, monkeypatch,
                                                    bikes_rentals):
    home = tmp_path / "home"
    monkeypatch.setenv("DRIFTLINE_HOME", str(home))
    ws = workspace_at(home, "bikes")
    replay(ws, dt.date(2011, 2, 1), dt.date(2011, 2, 28), source=bikes_rentals)
    assert [p.name for p in ws.landing_dir.iterdir()] == ["bikes_2011-02-01.csv"]
    # the monthly interval ending at the logical date: February 2011
    state, tasks, run_id = run("bikes_ingest",
                               logical_date=dt.datetime(2011, 3, 1, tzinfo=dt.UTC))
    assert state == "success", tasks
    repo = DataRepo.of(ws)
    assert repo.list_days(repo.head()) == [dt.date(2011, 2, 1)]
    (event,) = asset_events("driftline_bikes_data", run_id)
    february = int(bikes_rentals["dteday"].str.startswith("2011-02-").sum())
    assert event["day"] == "2011-02-01" and event["data_version"] == repo.head()
    assert event["rows"] == february and 600 < february <= 28 * 24
    assert asset_events("driftline_flights_data", run_id) == []


@needs_nginx
def test_bikes_train_gates_deploys_then_refuses_a_worse_candidate(bikes_home):
    from driftline.serving.bluegreen import BlueGreen

    ws = workspace_at(bikes_home, "bikes")
    conf = {"reason": "bikes dag"}  # the default window: the pack's 181 days up to the newest
    state, tasks, run_id = run("bikes_train", run_conf=conf)
    assert state == "success", tasks
    plan = xcom("bikes_train", run_id, "plan")  # Jan 1 - Jun 30 2011 is 181 days
    assert (plan["pack"], plan["start"], plan["end"], plan["trigger"]) == (
        "bikes", "2011-01-01", "2011-06-30", "manual")
    registry = Registry(ws.registry_dir, "bikes")
    champion = registry.champion()
    assert champion.metadata["window"] == {"start": "2011-01-01", "end": "2011-06-30"}
    assert Registry(ws.registry_dir, "flights").versions() == []  # its own namespace
    live = BlueGreen(ws).status()
    assert live["slots"][live["live"]]["version"] == champion.version
    (event,) = asset_events("driftline_bikes_champion", run_id)
    assert (event["version"], event["metric"]) == (champion.version, "rmse")
    assert event["value"] == champion.metrics["rmse"]

    weak = {**conf, "reason": "weak", "hyperparameters": {"num_boost_round": 1, "max_depth": 1}}
    state, tasks, run_id = run("bikes_train", run_conf=weak)
    assert state == "failed"
    assert tasks["gate"] == "failed" and tasks["deploy"] == "upstream_failed"
    assert registry.champion().version == champion.version
    (refused,) = [e for e in registry.events() if e["event"] == "refused"]
    assert "RMSE increase vs champion" in refused["reason"]
    assert refused["report_dir"] == str(bikes_home / "reports" / "bikes" / "gates" /
                                        "bikes_train" / slug(run_id))
    assert BlueGreen(ws).status()["live"] == live["live"]
