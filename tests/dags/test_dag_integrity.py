"""Every pack's DAGs load, are owned, tagged and retried, and parse without heavy imports."""

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
PACK_NAMES = ("flights", "bikes")
KINDS = ("ingest", "train", "monitor", "retrain_on_drift", "rollback")
EXPECTED = {f"{pack}_{kind}" for pack in PACK_NAMES for kind in KINDS}
HEAVY = ["pandas", "xgboost", "evidently", "dvc", "sklearn", "pyarrow"]

# The retry policy, written out here rather than read from the factory: ingest retries twice
# (a late file), the gate never (a refused candidate stays refused), rollback never (a
# person decides again); everything else once, 30 s apart.
RETRIES = {"wait_for_landing_file": 2, "ingest_partition": 2, "plan": 1, "train": 1, "gate": 0,
           "deploy": 1, "drift_report": 1, "live_quality": 1, "wait_for_retrain_policy": 1,
           "trigger_retraining": 1, "rollback": 0}
SCHEDULES = {
    "flights": {"ingest": "@daily", "train": None, "monitor": "@monthly",
                "retrain_on_drift": "@continuous", "rollback": None},
    "bikes": {"ingest": "@monthly", "train": None, "monitor": "@monthly",
              "retrain_on_drift": "@continuous", "rollback": None},
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dagbag_has_every_packs_dags_and_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_every_dag_has_owner_tags_retries_and_docs(dagbag):
    for dag in dagbag.dags.values():
        pack = dag.dag_id.split("_", 1)[0]
        assert {"driftline", f"pack:{pack}"} <= set(dag.tags), dag.dag_id
        assert dag.doc_md.startswith(f"**{pack}**"), dag.dag_id
        assert dag.default_args["retry_delay"] == dt.timedelta(seconds=30), dag.dag_id
        for task in dag.tasks:
            assert task.owner == "driftline", (dag.dag_id, task.task_id)
            assert task.retries == RETRIES[task.task_id], (dag.dag_id, task.task_id)
            assert task.retry_delay == dt.timedelta(seconds=30), (dag.dag_id, task.task_id)
            assert getattr(task, "pack", pack) == pack, (dag.dag_id, task.task_id)


def test_schedules_follow_each_packs_interval_and_train_starts_from_its_own_asset(dagbag):
    for pack, kinds in SCHEDULES.items():
        for kind, schedule in kinds.items():
            dag = dagbag.dags[f"{pack}_{kind}"]
            if kind == "train":
                assert (dag.schedule.name, dag.schedule.uri) == (
                    f"driftline_{pack}_data", f"driftline://{pack}/lake"), pack
            else:
                assert dag.schedule == schedule, dag.dag_id
        trigger = dagbag.dags[f"{pack}_retrain_on_drift"].task_dict["trigger_retraining"]
        assert trigger.trigger_dag_id == f"{pack}_train"


@pytest.mark.parametrize("pack", PACK_NAMES)
def test_train_params_are_json_schema_validated(dagbag, pack):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags[f"{pack}_train"].params)
    params.validate()  # defaults are valid
    params["hyperparameters"] = {"max_depth": 8, "device": "cuda"}
    with pytest.raises(ParamValidationError, match="99"):
        params["hyperparameters"] = {"max_depth": 99}
    with pytest.raises(ParamValidationError, match="max_dept"):
        params["hyperparameters"] = {"max_dept": 3}
    with pytest.raises(ParamValidationError, match="March"):
        params["window_end"] = "March"


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS_DIR.glob("*.py")))
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file):
    code = (
        "import json, sys, runpy\n"
        f"names = runpy.run_path({str(DAGS_DIR / dag_file)!r})\n"
        "print(json.dumps(sorted(k for k, v in names.items() if type(v).__name__ == 'DAG')))\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    *_, dags, heavy = out.stdout.strip().splitlines()
    assert set(json.loads(dags)) == EXPECTED  # the packs were really rendered
    assert json.loads(heavy) == []


def test_provider_is_registered_with_airflow():
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
                         capture_output=True, text=True, check=True)
    listing = next(line for line in out.stdout.splitlines() if line.startswith("[{"))
    names = {p["package_name"] for p in json.loads(listing)}
    assert "airflow-provider-driftline" in names
