import json

from driftline.evaluation import run_gate
from driftline.registry import Registry
from driftline.settings import GateSettings
from driftline.training import train
from driftline.versioning import DataRepo

from tests.helpers import DATA_END, DATA_START, settings_at


def _candidate(home, params):
    settings = settings_at(home)
    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    result = train(settings, head, DATA_START, DATA_END, params=params, reason="candidate")
    return Registry(settings.registry_dir, settings.model_name).get(result["version"])


def test_first_model_is_held_to_the_absolute_floor_only(trained_home, tmp_path):
    settings = settings_at(trained_home)
    version = Registry(settings.registry_dir, settings.model_name).get("v0001")
    verdict = run_gate(version, None, GateSettings(min_auc=0.6), tmp_path)
    assert verdict.passed
    assert [c.name for c in verdict.checks] == ["candidate AUC on holdout"]
    assert (tmp_path / "quality.html").stat().st_size > 10_000
    refused = run_gate(version, None, GateSettings(min_auc=0.99), tmp_path / "strict")
    assert not refused.passed and "candidate AUC on holdout" in refused.reason()


def test_gate_refuses_a_worse_candidate_and_says_by_how_much(home_copy, tmp_path):
    settings = settings_at(home_copy)
    champion = Registry(settings.registry_dir, settings.model_name).get("v0001")
    weak = _candidate(home_copy, {"num_boost_round": 1, "max_depth": 1})
    verdict = run_gate(weak, champion, GateSettings(), tmp_path)
    assert not verdict.passed
    failed = {c.name: c for c in verdict.failures}
    assert "AUC drop vs champion" in failed
    drop = failed["AUC drop vs champion"]
    cand, champ = verdict.metrics["candidate"]["auc"], verdict.metrics["champion"]["auc"]
    assert drop.value == champ - cand > 0.01 and drop.margin < 0
    assert f"off by {abs(drop.margin):.4f}" in verdict.reason()
    saved = json.loads((tmp_path / "verdict.json").read_text())
    assert saved["passed"] is False and saved["champion"] == "v0001"
    assert {"quality.html", "drift.html", "drift.json"} <= {p.name for p in tmp_path.iterdir()}
    assert "FAIL" in verdict.table()


def test_gate_passes_a_candidate_as_good_as_the_champion(home_copy, tmp_path):
    settings = settings_at(home_copy)
    champion = Registry(settings.registry_dir, settings.model_name).get("v0001")
    twin = _candidate(home_copy, {"subsample": 0.89})
    verdict = run_gate(twin, champion, GateSettings(max_auc_drop=0.02), tmp_path)
    assert verdict.passed, verdict.table()
    drift = verdict.metrics["train_drift"]
    assert drift["share"] < 0.2  # same data, same sample: nothing should drift
