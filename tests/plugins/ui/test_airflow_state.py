"""What the driftline pages read from Airflow, on real runs: ``dag.test()`` of the flights
train DAG (a good model deployed, then a one-stump model the gate refuses) in a fresh
interpreter with its own metadata database, so the runs found are exactly these. The pages'
lineage names the run that trained each model and the run that ingested its data, each
stage's time is the tasks' own, and the gate and deploy tasks' extra links point at the
report and page they wrote."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from driftline.registry import Registry

from tests.helpers import ROOT, settings_at, workspace_at

pytestmark = pytest.mark.nginx

SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from driftline_provider.ui.airflow_state import pack_runs

def run(conf):
    dag = DagBag(dag_folder=sys.argv[1]).get_dag("flights_train")
    return dag.test(run_conf=conf).run_id

def link(run_id, task_id):
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(
            run_id=run_id, dag_ids="flights_train", task_ids=task_id,
            key="_link_DriftlineReportLink")).all()
        return [XComModel.deserialize_value(r) for r in rows]

conf = {"window_start": "2013-01-01", "window_end": "2013-01-24", "reason": "ui test"}
good = run(conf)
bad = run({**conf, "reason": "weak",
           "hyperparameters": {"num_boost_round": 1, "max_depth": 1}})
print("RESULT " + json.dumps({
    "good": good, "bad": bad, "runs": pack_runs("flights"),
    "links": {f"{r}/{t}": link(run_id, t) for r, run_id in (("good", good), ("bad", bad))
              for t in ("gate", "deploy")}}))
"""


@pytest.fixture
def observed(home_copy, tmp_path):
    env = {**os.environ, "DRIFTLINE_HOME": str(home_copy),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db"}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT / "dags")], env=env,
                             capture_output=True, text=True, timeout=900, check=False)
    finally:
        from driftline.serving.bluegreen import stop_serving

        stop_serving(settings_at(home_copy))
    assert out.returncode == 0, out.stderr[-4000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    return home_copy, json.loads(line.removeprefix("RESULT "))


def test_lineage_stage_times_and_extra_links_come_from_the_real_runs(observed):
    home, result = observed
    ws = workspace_at(home)
    registry = Registry(ws.registry_dir, ws.model_name)
    champion = registry.champion()
    refused = [e for e in registry.events() if e["event"] == "refused"][-1]
    weak = registry.get(refused["version"])
    runs = result["runs"]
    good, bad = result["good"], result["bad"]

    by_model = runs["by_model"]
    assert by_model[champion.metadata["artifact"]["sha256"]] == {
        "dag_id": "flights_train", "run_id": good, "task_id": "train"}
    assert by_model[weak.metadata["artifact"]["sha256"]]["run_id"] == bad

    listed = {r["run_id"]: r for r in runs["runs"]}
    assert set(listed) == {good, bad}
    assert {t: s["state"] for t, s in listed[good]["tasks"].items()} == {
        "plan": "success", "train": "success", "gate": "success", "deploy": "success"}
    assert listed[bad]["tasks"]["gate"]["state"] == "failed"
    assert listed[good]["conf"]["reason"] == "ui test"
    tasks = {r: listed[r]["tasks"] for r in (good, bad)}
    # the medians of the tasks' own durations: train = plan + train in both runs; the
    # deploy only ran in the good one
    trains = sorted(t["plan"]["duration"] + t["train"]["duration"] for t in tasks.values())
    assert runs["stages"]["train"] == round(sum(trains) / 2, 1)
    assert runs["stages"]["deploy"] == round(tasks[good]["deploy"]["duration"], 1)
    assert runs["stages"]["gate"] == round(tasks[good]["gate"]["duration"], 1)
    assert runs["stages"]["ingest"] is None  # nothing was ingested through Airflow here

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", bad)
    links = result["links"]
    assert links["bad/gate"] == [
        f"/driftline/reports/flights/gates/flights_train/{slug}/verdict.html"]
    assert (ws.reports_dir / "gates" / "flights_train" / slug / "verdict.html").exists()
    assert links["good/deploy"] == ["/driftline/packs/flights#serving"]
    assert links["bad/deploy"] == []  # upstream_failed: the task never ran
