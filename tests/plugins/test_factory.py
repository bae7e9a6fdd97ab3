"""The per-pack DAG factory as Airflow's own DagBag parses it: every good pack's DAGs load,
a broken pack is one import error that says what is wrong, a new pack needs no code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import PACKS, ROOT

DAG_FILE = ROOT / "dags" / "driftline_packs.py"
KINDS = ("ingest", "train", "monitor", "retrain_on_drift", "rollback")


def dag_ids(*packs: str) -> set[str]:
    return {f"{pack}_{kind}" for pack in packs for kind in KINDS}


def parse(packs_dir: Path, monkeypatch):
    """Airflow's DagBag of the repository's DAG folder with ``packs_dir`` as the packs."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DRIFTLINE_PACKS", str(packs_dir))
    return DagBag(dag_folder=str(ROOT / "dags"), safe_mode=False)


@pytest.fixture
def packs_dir(tmp_path) -> Path:
    """A packs directory holding copies of both shipped packs."""
    root = tmp_path / "packs"
    for name in ("flights", "bikes"):
        shutil.copytree(PACKS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_only_good_packs_load_with_no_import_error_and_no_stand_in(packs_dir, monkeypatch):
    bag = parse(packs_dir, monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == dag_ids("flights", "bikes")
    assert "driftline_broken_packs" not in bag.dag_ids


def test_a_broken_pack_is_one_import_error_naming_pack_file_field_and_expectation(
        packs_dir, monkeypatch):
    broken = packs_dir / "rentals"
    shutil.copytree(packs_dir / "bikes", broken)
    spec = (broken / "pack.toml").read_text()
    assert spec.count('name = "bikes"') == 1 and spec.count('column = "cnt"') == 1
    (broken / "pack.toml").write_text(spec.replace('name = "bikes"', 'name = "rentals"')
                                      .replace('column = "cnt"', 'column = "riders"'))

    bag = parse(packs_dir, monkeypatch)

    assert set(bag.dag_ids) == dag_ids("flights", "bikes")  # the good packs still load
    assert list(bag.import_errors) == [str(DAG_FILE)]
    message = bag.import_errors[str(DAG_FILE)]
    assert "pack 'rentals'" in message
    assert str(broken / "pack.toml") in message
    assert "field 'label.column'" in message
    assert "'riders' is not a declared column" in message and "'cnt'" in message
    assert "bikes" not in message.replace(str(packs_dir), "")  # only the broken pack is named


def test_a_pack_written_from_scratch_renders_its_five_dags(packs_dir, monkeypatch):
    """A regression pack with no hooks, following the README's minimal spec."""
    from driftline.landing import read_landing_file
    from driftline.packs import load_pack

    kiosk = packs_dir / "kiosk"
    kiosk.mkdir()
    (kiosk / "pack.toml").write_text('''\
name = "kiosk"
description = "Ice creams sold per hour at one kiosk"
task = "regression"
[landing]
pattern = "kiosk_{date}.csv"
interval = "daily"
[time]
column = "sold_at"
timezone = "Europe/Berlin"
[columns]
sold_at = {type = "datetime", nullable = false}
price = {type = "number", range = [0, 20]}
weather = {type = "category", categories = ["sun", "rain"]}
sold = {type = "integer", range = [0, 500]}
[label]
column = "sold"
rule = "value"
[features]
numeric = ["price"]
categorical = ["weather"]
[gate]
floors = {r2 = 0.2}
max_worsening = {rmse = 3.0}
''')
    sample = kiosk / "kiosk_2026-07-01.csv"
    sample.write_text("sold_at,price,weather,sold\n"
                      "2026-07-01T10:00:00,2.5,sun,41\n"
                      "2026-07-01T11:00:00,2.5,rain,7\n"
                      "2026-07-01T12:00:00,3.0,sun,55\n")

    bag = parse(packs_dir, monkeypatch)

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == dag_ids("flights", "bikes", "kiosk")
    assert bag.dags["kiosk_ingest"].schedule == "@daily"
    assert bag.dags["kiosk_train"].schedule.name == "driftline_kiosk_data"
    assert "Ice creams sold per hour" in bag.dags["kiosk_monitor"].doc_md
    pack = load_pack(kiosk)
    assert (pack.task, pack.metric, pack.features) == ("regression", "rmse", ["price", "weather"])
    assert pack.label(read_landing_file(pack, sample)).tolist() == [41.0, 7.0, 55.0]


def test_each_packs_assets_are_its_own(packs_dir, monkeypatch):
    bag = parse(packs_dir, monkeypatch)
    produced = {}
    for pack in ("flights", "bikes"):
        outlets = [(task.task_id, outlet.name, outlet.uri)
                   for kind in KINDS for task in bag.dags[f"{pack}_{kind}"].tasks
                   for outlet in task.outlets]
        assert sorted(outlets) == sorted([
            ("ingest_partition", f"driftline_{pack}_data", f"driftline://{pack}/lake"),
            ("deploy", f"driftline_{pack}_champion", f"driftline://{pack}/registry/champion"),
            ("drift_report", f"driftline_{pack}_drift_reports",
             f"driftline://{pack}/reports/drift"),
            ("live_quality", f"driftline_{pack}_quality_reports",
             f"driftline://{pack}/reports/quality")])
        train = bag.dags[f"{pack}_train"].schedule
        assert (train.name, train.uri) == (f"driftline_{pack}_data", f"driftline://{pack}/lake")
        produced[pack] = {(name, uri) for _, name, uri in outlets}
    assert {n for n, _ in produced["flights"]}.isdisjoint({n for n, _ in produced["bikes"]})
    assert {u for _, u in produced["flights"]}.isdisjoint({u for _, u in produced["bikes"]})


def test_the_hyperparameter_schema_is_the_trainers_one_list(packs_dir, monkeypatch):
    from airflow.sdk.exceptions import ParamValidationError
    from driftline.hyperparameters import HYPERPARAMETER_SCHEMA
    from driftline.training import HYPERPARAMETERS

    from tests.helpers import workspace_at

    assert list(HYPERPARAMETER_SCHEMA) == list(HYPERPARAMETERS)
    bag = parse(packs_dir, monkeypatch)
    for pack in ("flights", "bikes"):
        params = bag.dags[f"{pack}_train"].params
        schema = params.get_param("hyperparameters").schema
        assert list(schema["properties"]) == list(HYPERPARAMETERS)
        # every default the trainer would use is a value the form accepts, and nothing else is
        training = workspace_at(ROOT / ".never-written", pack).training
        params["hyperparameters"] = {k: getattr(training, k) for k in HYPERPARAMETERS}
        with pytest.raises(ParamValidationError, match="seed"):
            params["hyperparameters"] = {"seed": 1}
