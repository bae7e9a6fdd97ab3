import dataclasses
import datetime as dt
import json
import shutil

import pytest
from driftline.evaluation import run_gate
from driftline.features import FeatureSchema
from driftline.packs.timeline import iter_intervals
from driftline.registry import Registry
from driftline.scoring import predict
from driftline.settings import GateSettings
from driftline.training import train
from driftline.versioning import DataRepo
from sklearn.metrics import log_loss, roc_auc_score

from tests.helpers import DATA_END, DATA_START, workspace_at

JULY = (dt.date(2013, 7, 1), dt.date(2013, 7, 10))
CHECKS = ("candidate AUC on holdout", "AUC drop vs champion", "log loss increase vs champion",
          "AUC vs champion, 95% CI high", "training-data drift share")


@pytest.fixture(scope="module")
def gate_home(tmp_path_factory, trained_home, flights):
    """``trained_home`` plus July partitions and three candidates: v0002 a near-twin of the
    champion, v0003 a one-stump model, v0004 trained on July."""
    home = tmp_path_factory.mktemp("gate") / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    ws = workspace_at(home)
    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(*JULY, "daily"):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])
    head = repo.head()
    for params, (start, end) in (({"subsample": 0.89}, (DATA_START, DATA_END)),
                                 ({"num_boost_round": 1, "max_depth": 1}, (DATA_START, DATA_END)),
                                 ({}, JULY)):
        train(ws, head, start, end, params=params, reason="candidate")
    return home


def _versions(home):
    ws = workspace_at(home)
    registry = Registry(ws.registry_dir, ws.model_name)
    return ws, {v.version: v for v in registry.versions()}


def _sklearn_metrics(version, holdout, pack):
    """AUC and log loss of ``version`` on ``holdout``, computed without the gate: sklearn on
    the model's predictions, the label taken straight from the rule (arrival > 15 min late)."""
    late = (holdout["arr_delay"] > 15).astype(int)
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    proba = predict(pack, version.load_booster(), holdout, schema)
    return {"auc": roc_auc_score(late, proba), "logloss": log_loss(late, proba)}


def _gate(ws, candidate, champion, tmp_path, **changes):
    limits = dataclasses.replace(ws.gate, **changes)
    return run_gate(ws.pack, candidate, champion, limits, tmp_path,
                    ws.monitor.column_drift_threshold)


def test_first_model_is_held_to_the_floors_only(trained_home, tmp_path):
    ws = workspace_at(trained_home)
    version = Registry(ws.registry_dir, ws.model_name).get("v0001")
    expected = _sklearn_metrics(version, version.holdout(), ws.pack)
    verdict = run_gate(ws.pack, version, None, GateSettings(floors={"auc": 0.6}), tmp_path)
    assert verdict.passed
    (check,) = verdict.checks
    assert check.name == "candidate AUC on holdout" and check.op == ">="
    assert check.value == pytest.approx(expected["auc"], abs=1e-9)
    assert (tmp_path / "quality.html").stat().st_size > 10_000
    refused = run_gate(ws.pack, version, None, GateSettings(floors={"auc": 0.99}),
                       tmp_path / "strict")
    assert not refused.passed and "candidate AUC on holdout" in refused.reason()
    # A floor on a lower-is-better metric is a ceiling.
    ceiling = run_gate(ws.pack, version, None,
                       GateSettings(floors={"logloss": expected["logloss"] - 0.001}),
                       tmp_path / "logloss")
    (failure,) = ceiling.failures
    assert (failure.name, failure.op) == ("candidate log loss on holdout", "<=")
    assert failure.value == pytest.approx(expected["logloss"], abs=1e-6)


def test_gate_refuses_a_worse_candidate_and_says_by_how_much(gate_home, tmp_path):
    ws, versions = _versions(gate_home)
    champion, weak = versions["v0001"], versions["v0003"]
    holdout = weak.holdout()
    ours, theirs = (_sklearn_metrics(v, holdout, ws.pack) for v in (weak, champion))
    verdict = _gate(ws, weak, champion, tmp_path)
    assert not verdict.passed
    failed = {c.name: c for c in verdict.failures}
    assert set(failed) == {"candidate AUC on holdout", "AUC drop vs champion",
                           "log loss increase vs champion", "AUC vs champion, 95% CI high"}
    drop = failed["AUC drop vs champion"]
    assert drop.value == pytest.approx(theirs["auc"] - ours["auc"], abs=1e-9)
    assert drop.value > 0.1 and drop.margin == pytest.approx(0.01 - drop.value)
    increase = failed["log loss increase vs champion"]
    assert increase.value == pytest.approx(ours["logloss"] - theirs["logloss"], abs=1e-6)
    assert f"off by {abs(drop.margin):.4f}" in verdict.reason()
    saved = json.loads((tmp_path / "verdict.json").read_text())
    assert saved["passed"] is False and saved["champion"] == "v0001"
    assert {"quality.html", "drift.html", "drift.json", "verdict.html"} <= {
        p.name for p in tmp_path.iterdir()}
    assert "FAIL" in verdict.table()


def test_gate_passes_a_candidate_as_good_as_the_champion(gate_home, tmp_path):
    """The pack's own limits, unchanged: a near-twin passes every check."""
    ws, versions = _versions(gate_home)
    champion, twin = versions["v0001"], versions["v0002"]
    assert ws.gate.max_worsening == {"auc": 0.01, "logloss": 0.02}
    verdict = _gate(ws, twin, champion, tmp_path)
    assert verdict.passed, verdict.table()
    assert [c.name for c in verdict.checks] == list(CHECKS)
    # Same rows and the same seeded sample: the two references are identical frames.
    assert twin.reference().equals(champion.reference())
    assert verdict.metrics["train_drift"]["share"] == 0.0


@pytest.mark.parametrize("check", CHECKS[:3])
def test_each_limit_alone_refuses_a_candidate_just_past_it(gate_home, tmp_path, check):
    """One limit tightened just past the twin's independently measured value: exactly that
    check fails."""
    ws, versions = _versions(gate_home)
    champion, twin = versions["v0001"], versions["v0002"]
    holdout = twin.holdout()
    ours, theirs = (_sklearn_metrics(v, holdout, ws.pack) for v in (twin, champion))
    worsening = dict(ws.gate.max_worsening)
    floors = dict(ws.gate.floors)
    if check == "candidate AUC on holdout":
        floors["auc"] = ours["auc"] + 0.001
    elif check == "AUC drop vs champion":
        worsening["auc"] = theirs["auc"] - ours["auc"] - 0.001
    else:
        worsening["logloss"] = ours["logloss"] - theirs["logloss"] - 0.001
    verdict = _gate(ws, twin, champion, tmp_path, floors=floors, max_worsening=worsening)
    assert [c.name for c in verdict.failures] == [check], verdict.table()
    assert verdict.failures[0].margin == pytest.approx(-0.001, abs=1e-6)


def test_a_candidate_from_another_season_fails_on_log_loss_and_drift(gate_home, tmp_path):
    """Trained on July: ranks July better than the January champion but is less calibrated
    (fails the pack's log-loss limit alone). Its training data drifted: at least temperature
    and dew point (July against January), so a share of 2 in 16 features or more. With the
    log-loss limit just above its independently measured increase it passes every check;
    then the drift limit alone, tightened below 2/16, refuses it."""
    ws, versions = _versions(gate_home)
    champion, july = versions["v0001"], versions["v0004"]
    holdout = july.holdout()
    ours, theirs = (_sklearn_metrics(v, holdout, ws.pack) for v in (july, champion))
    verdict = _gate(ws, july, champion, tmp_path / "pack")
    (failure,) = verdict.failures
    assert failure.name == "log loss increase vs champion"
    assert failure.value == pytest.approx(ours["logloss"] - theirs["logloss"], abs=1e-6)
    assert failure.value > 0.02 and ours["auc"] > theirs["auc"]
    drift = verdict.metrics["train_drift"]
    assert {"temp", "dewp"} <= set(drift["drifted"])
    assert drift["share"] == len(drift["drifted"]) / len(ws.pack.features)

    assert len(ws.pack.features) == 16
    calibrated = {**ws.gate.max_worsening, "logloss": ours["logloss"] - theirs["logloss"] + 0.001}
    passing = _gate(ws, july, champion, tmp_path / "passing", max_worsening=calibrated)
    assert passing.passed, passing.table()
    strict = _gate(ws, july, champion, tmp_path / "strict", max_worsening=calibrated,
                   max_train_drift_share=1.5 / 16)
    (failure,) = strict.failures
    assert failure.name == "training-data drift share" and failure.value >= 2 / 16
    assert "temp" in failure.detail and "dewp" in failure.detail


def test_a_champion_under_another_label_definition_is_not_compared(gate_home, tmp_path,
                                                                   monkeypatch):
    """A candidate trained with the label redefined (late = over 30 minutes) is refused
    against the 15-minute champion, unless allow_label_change: then the floors alone apply."""
    import sys

    hooks = "driftline_pack_flights_hooks"
    monkeypatch.setitem(sys.modules, hooks, sys.modules[hooks])  # restored after the test
    packs = tmp_path / "packs"
    shutil.copytree(workspace_at(gate_home).pack.directory, packs / "flights")
    spec = packs / "flights" / "pack.toml"
    spec.write_text(spec.read_text().replace('rule = "> 15"', 'rule = "> 30"'))
    ws = workspace_at(gate_home, packs_dir=packs)
    champion = Registry(ws.registry_dir, ws.model_name).get("v0001")
    assert ws.pack.label_digest != champion.metadata["pack"]["label_digest"]
    result = train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, reason="late = 30 min")
    candidate = Registry(ws.registry_dir, ws.model_name).get(result["version"])

    refused = _gate(ws, candidate, champion, tmp_path / "refused")
    assert [c.name for c in refused.failures] == ["label definition same as champion"]
    assert [c.name for c in refused.checks] == ["candidate AUC on holdout",
                                                "label definition same as champion"]
    assert refused.metrics["label_changed"] and "champion" not in refused.metrics
    allowed = _gate(ws, candidate, champion, tmp_path / "allowed", allow_label_change=True)
    assert allowed.passed, allowed.table()
    assert "only the floors apply" in allowed.checks[-1].detail
