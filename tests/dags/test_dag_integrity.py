"""Every DAG loads, is owned, tagged and retried, and parses without heavy imports."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"driftline_ingest", "driftline_train", "driftline_monitor",
            "driftline_retrain_on_drift", "driftline_rollback"}
HEAVY = ["pandas", "xgboost", "evidently", "dvc", "sklearn", "pyarrow"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dagbag_has_every_dag_and_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_every_dag_has_owner_tags_retries_and_docs(dagbag):
    for dag in dagbag.dags.values():
        assert "driftline" in dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id
        for task in dag.tasks:
            assert task.owner == "driftline", (dag.dag_id, task.task_id)
            assert "retries" in dag.default_args, dag.dag_id


def test_train_params_are_json_schema_validated(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.dags["driftline_train"].params)
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
        f"runpy.run_path({str(DAGS_DIR / dag_file)!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_provider_is_registered_with_airflow():
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
                         capture_output=True, text=True, check=True)
    listing = next(line for line in out.stdout.splitlines() if line.startswith("[{"))
    names = {p["package_name"] for p in json.loads(listing)}
    assert "airflow-provider-driftline" in names


def test_trigger_is_importable_by_path_and_round_trips():
    from airflow.sdk.module_loading import import_string
    from driftline_provider.triggers.drift import DriftReportTrigger

    path, kwargs = DriftReportTrigger("/x", 0.4, 2.0).serialize()
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)
