"""``dag.test()`` of every DAG on real data, real DVC, real model servers and nginx."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from driftline.registry import Registry
from driftline.sources import landing_path, replay
from driftline.versioning import DataRepo

from tests.helpers import settings_at

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
needs_nginx = pytest.mark.nginx


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def home(home_copy, monkeypatch):
    """A private driftline home (with v0001 registered) that the DAGs' operators use."""
    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    yield home_copy
    from driftline.serving.bluegreen import BlueGreen

    BlueGreen(settings_at(home_copy)).stop_all()


def run(dagbag, dag_id: str, **kwargs) -> tuple[str, dict[str, str]]:
    from airflow.utils.session import create_session

    dag = dagbag.get_dag(dag_id)
    dag_run = dag.test(**kwargs)
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances(session=session)}
    return dag_run.state, states


def asset_events(asset_name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == asset_name).all())
        return [dict(r.extra) for r in rows]


def test_ingest_writes_a_versioned_partition_and_publishes_its_version(dagbag, home):
    settings = settings_at(home)
    replay(settings.landing_dir, dt.date(2013, 1, 25), dt.date(2013, 1, 25))
    state, tasks = run(dagbag, "driftline_ingest",
                       logical_date=dt.datetime(2013, 1, 25, tzinfo=dt.UTC))
    assert state == "success", tasks
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    assert dt.date(2013, 1, 25) in repo.list_days(repo.head())
    (event,) = [e for e in asset_events("driftline_flights") if e.get("day") == "2013-01-25"]
    assert event["data_version"] == repo.head() and event["rows"] > 500


def test_a_bad_landing_file_is_quarantined_and_fails_the_run(dagbag, home):
    settings = settings_at(home)
    day = dt.date(2013, 1, 26)
    replay(settings.landing_dir, day, day)
    path = landing_path(settings.landing_dir, day)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("dest")
    path.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop)
                              for line in lines))
    head_before = DataRepo(settings.data_repo, settings.dvc_remote).head()

    state, tasks = run(dagbag, "driftline_ingest", logical_date=dt.datetime(2013, 1, 26,
                                                                           tzinfo=dt.UTC))
    assert state == "failed" and tasks["ingest_partition"] == "failed"
    reason = json.loads((settings.quarantine_dir / f"{path.name}.reason.json").read_text())
    assert reason["failed"] == ["required column present on column 'dest' FAILED: measured "
                                "missing, limit present"]
    assert not path.exists() and (settings.quarantine_dir / path.name).exists()
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    assert repo.head() == head_before and day not in repo.list_days(repo.head())


@needs_nginx
def test_train_gates_and_deploys_then_refuses_a_worse_candidate(dagbag, home):
    settings = settings_at(home)
    conf = {"window_start": "2013-01-01", "window_end": "2013-01-24", "reason": "dag test"}
    state, tasks = run(dagbag, "driftline_train", run_conf=conf)
    assert state == "success", tasks
    registry = Registry(settings.registry_dir, settings.model_name)
    champion = registry.champion()
    from driftline.serving.bluegreen import BlueGreen

    live = BlueGreen(settings).status()
    assert live["slots"][live["live"]]["version"] == champion.version

    weak = {**conf, "reason": "weak", "hyperparameters": {"num_boost_round": 1, "max_depth": 1}}
    state, tasks = run(dagbag, "driftline_train", run_conf=weak)
    assert state == "failed"
    assert tasks["gate"] == "failed" and tasks["deploy"] == "upstream_failed"
    assert registry.champion().version == champion.version
    refused = [e for e in registry.events() if e["event"] == "refused"]
    assert len(refused) == 1 and "AUC drop vs champion" in refused[0]["reason"]
    assert BlueGreen(settings).status()["live"] == live["live"]


def test_monitor_writes_the_months_drift_report(dagbag, home):
    settings = settings_at(home)
    Registry(settings.registry_dir, settings.model_name).set_alias("champion", "v0001", "t")
    # a manual run's interval is the one ending at its logical date: January
    state, tasks = run(dagbag, "driftline_monitor",
                       logical_date=dt.datetime(2013, 2, 1, tzinfo=dt.UTC))
    assert state == "success", tasks
    assert tasks["drift_report"] == "success"
    summary = json.loads((settings.reports_dir / "drift" / "drift_2013-01-01_2013-01-31" /
                          "summary.json").read_text())
    assert summary["model_version"] == "v0001" and 0 <= summary["share"] <= 1
    (event,) = asset_events("driftline_drift_reports")[-1:]
    assert event["report_id"] == summary["report_id"]


def test_monitor_skips_while_no_model_is_live(dagbag, home):
    _, tasks = run(dagbag, "driftline_monitor",
                       logical_date=dt.datetime(2013, 2, 1, tzinfo=dt.UTC))
    assert tasks["drift_report"] == "skipped"


def test_drift_sensor_claims_a_crossing_report_and_triggers_training(dagbag, home):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    settings = settings_at(home)
    report = settings.reports_dir / "drift" / "drift_2013-06-01_2013-06-30"
    report.mkdir(parents=True)
    (report / "summary.json").write_text(json.dumps({
        "report_id": report.name, "start": "2013-06-01", "end": "2013-06-30", "share": 0.6,
        "threshold": 0.4, "crossed": True, "data_version": "abc1234"}))
    state, tasks = run(dagbag, "driftline_retrain_on_drift")
    assert state == "success", tasks
    claim = json.loads((report / "retrain_claim.json").read_text())
    assert claim["by"]
    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "driftline_train").all()
        confs = [r.conf for r in runs if (r.conf or {}).get("drift_report_id") == report.name]
    assert confs and confs[0]["window_end"] == "2013-06-30"


@needs_nginx
def test_rollback_dag_switches_back_and_moves_the_champion(dagbag, home):
    from driftline.serving.bluegreen import BlueGreen
    from driftline.training import train

    settings = settings_at(home)
    registry = Registry(settings.registry_dir, settings.model_name)
    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    v2 = train(settings, head, dt.date(2013, 1, 1), dt.date(2013, 1, 24),
               params={"max_depth": 4})["version"]
    serving = BlueGreen(settings)
    for version in ("v0001", v2):
        serving.deploy(registry.get(version), "test")
        registry.set_alias("champion", version, "test")

    state, tasks = run(dagbag, "driftline_rollback", run_conf={"reason": "bad latency"})
    assert state == "success", tasks
    status = BlueGreen(settings).status()
    assert status["slots"][status["live"]]["version"] == "v0001"
    assert registry.champion().version == "v0001"
    assert registry.events()[-1]["reason"] == "rollback: bad latency"
