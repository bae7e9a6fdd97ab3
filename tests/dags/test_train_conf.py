"""A mistyped trigger of the train DAG is refused before anything runs: ``dag.test()`` on a
real DVC repo with a live champion, which stays live."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftline.registry import Registry

from tests.helpers import workspace_at

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "driftline_packs.py"


@pytest.fixture
def home(home_copy, monkeypatch, airflow_db):
    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    Registry(workspace_at(home_copy).registry_dir, "flights").set_alias("champion", "v0001",
                                                                       "live")
    return home_copy


def run_train(conf: dict) -> tuple[str, dict]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(DAG_FILE)).get_dag("flights_train")
    dag_run = dag.test(run_conf=conf)
    with create_session() as session:
        tis = {ti.task_id: ti for ti in dag_run.get_task_instances(session=session)}
        return dag_run.state, {k: (ti.state, ti.try_number) for k, ti in tis.items()}


@pytest.mark.parametrize("conf, why", [
    ({"num_boost_round": -5}, "unknown option(s) ['num_boost_round']"),
    ({"data_version": "0123456789abcdef"}, "'0123456789abcdef' is not a commit"),
    ({"window_end": "2014-06-30"}, "window_end 2014-06-30 is after the newest data"),
])
def test_a_refused_conf_fails_the_plan_once_and_trains_nothing(home, conf, why, capfd):
    registry = Registry(workspace_at(home).registry_dir, "flights")
    before = [v.version for v in registry.versions()]
    state, tasks = run_train(conf)
    assert state == "failed"
    assert tasks["plan"] == ("failed", 1), tasks  # AirflowFailException: no retry
    assert tasks["train"][0] == "upstream_failed" and tasks["deploy"][0] == "upstream_failed"
    assert why in capfd.readouterr().out  # the task log
    assert [v.version for v in registry.versions()] == before
    assert registry.champion().version == "v0001"
