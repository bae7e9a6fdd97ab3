"""The gate's paired interval of candidate minus champion on the primary metric, on real
flights models whose answer is known: a model trained on one day is worse than the champion
trained on nineteen, the champion is no better than itself, and the champion is better than
the one-day model. The interval's difference is checked against sklearn, its decision against
the policy (``[gate] significance``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import numpy as np
import pytest
from driftline.evaluation import run_gate
from driftline.features import FeatureSchema
from driftline.registry import Registry
from driftline.scoring import predict
from driftline.settings import build_section
from driftline.significance import RESAMPLES, paired_difference
from driftline.training import train
from driftline.versioning import DataRepo
from sklearn.metrics import roc_auc_score

from tests.helpers import DATA_END, workspace_at

ONE_DAY = (dt.date(2013, 1, 19), DATA_END)  # 1 training day, then the shared 5-day holdout


@pytest.fixture(scope="module")
def models(tmp_path_factory, trained_home):
    """The workspace, the champion v0001 (19 training days) and a candidate trained on one
    day, held out on the same 20-24 January."""
    home = tmp_path_factory.mktemp("gate-statistics") / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    ws = workspace_at(home)
    registry = Registry(ws.registry_dir, ws.model_name)
    result = train(ws, DataRepo.of(ws).head(), *ONE_DAY, reason="one day")
    champion, one_day = registry.get("v0001"), registry.get(result["version"])
    assert one_day.holdout().equals(champion.holdout())  # the same rows for both
    return ws, champion, one_day


def _auc(ws, version, holdout) -> float:
    """AUC by sklearn on the model's predictions, the label straight from the rule."""
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    proba = predict(ws.pack, version.load_booster(), holdout, schema)
    return roc_auc_score((holdout["arr_delay"] > 15).astype(int), proba)


def _gate(ws, candidate, champion, path, **changes):
    return run_gate(ws.pack, candidate, champion, dataclasses.replace(ws.gate, **changes), path,
                    ws.monitor.column_drift_threshold)


def _statistical(verdict):
    (check,) = [c for c in verdict.checks if c.statistics]
    return check


def test_the_interval_is_of_candidate_minus_champion_and_reruns_give_the_same(models):
    ws, champion, one_day = models
    holdout = champion.holdout()
    target = (holdout["arr_delay"] > 15).astype(int)
    ours, theirs = (predict(ws.pack, v.load_booster(), holdout,
                            FeatureSchema.from_dict(v.metadata["feature_schema"]))
                    for v in (one_day, champion))
    diff = paired_difference("auc", target, ours, theirs)
    assert diff.difference == pytest.approx(roc_auc_score(target, ours)
                                            - roc_auc_score(target, theirs), abs=1e-12)
    assert diff.low < diff.difference < diff.high and diff.rows == len(holdout)
    assert paired_difference("auc", target, ours, theirs) == diff  # seeded
    wider = paired_difference("auc", target, ours, theirs, confidence=0.99)
    assert wider.low < diff.low and wider.high > diff.high
    assert 2 / (RESAMPLES + 1) <= diff.p_value <= 1
    # the same interval, within resampling error, from a plain loop over sklearn's AUC
    y, a, b = target.to_numpy(), ours, theirs
    picks = np.random.default_rng(7).integers(0, len(y), (400, len(y)))
    loop = [roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]) for i in picks]
    assert np.percentile(loop, [2.5, 97.5]) == pytest.approx([diff.low, diff.high], abs=0.006)


def test_a_candidate_trained_on_one_day_is_refused_as_significantly_worse(models, tmp_path):
    ws, champion, one_day = models
    assert ws.gate.significance == "refuse_worse" and ws.gate.confidence == 0.95  # defaults
    holdout = one_day.holdout()
    drop = _auc(ws, champion, holdout) - _auc(ws, one_day, holdout)
    verdict = _gate(ws, one_day, champion, tmp_path)
    check = _statistical(verdict)
    stats = check.statistics
    assert (check.name, check.op, check.threshold) == ("AUC vs champion, 95% CI high", ">=", 0)
    assert not check.passed and check.value == stats["high"] < 0
    assert stats["difference"] == pytest.approx(-drop, abs=1e-9)
    assert stats["rows"] == len(holdout) and stats["p_value"] < 0.05
    assert check.margin == pytest.approx(stats["high"])
    interval = f"95% CI [{stats['low']:+.4f}, {stats['high']:+.4f}]"
    assert f"{check.name} = {stats['high']:.4f}, limit >= 0.0 (off by {-stats['high']:.4f}" \
        in verdict.reason() and interval in verdict.reason()
    assert interval in verdict.table() and f"{len(holdout)} rows" in verdict.table()
    saved = json.loads((tmp_path / "verdict.json").read_text())
    (kept,) = [c for c in saved["checks"] if c["name"] == check.name]
    assert kept["statistics"] == stats and kept["passed"] is False
    page = (tmp_path / "verdict.html").read_text()
    assert interval in page and f"p = {stats['p_value']:.4f}" in page
    assert "quality.html" in page


def test_the_champion_against_itself_is_not_significantly_better(models, tmp_path):
    """Identical predictions: the difference and its whole interval are 0, p is 1. Not worse,
    so the default passes; not better, so ``require_better`` refuses, naming the interval."""
    ws, champion, _ = models
    same = _gate(ws, champion, champion, tmp_path / "default")
    assert same.passed, same.table()
    stats = _statistical(same).statistics
    assert (stats["difference"], stats["low"], stats["high"], stats["p_value"]) == (0, 0, 0, 1)

    refused = _gate(ws, champion, champion, tmp_path / "better", significance="require_better")
    (failure,) = refused.failures
    assert (failure.name, failure.op, failure.value) == ("AUC vs champion, 95% CI low", ">", 0)
    assert "95% CI [+0.0000, +0.0000], p = 1.0000" in refused.reason()
    assert "policy require_better" in refused.reason()


def test_a_genuinely_better_candidate_passes_even_when_it_must_be_better(models, tmp_path):
    """The champion as the candidate against the one-day model: significantly better."""
    ws, champion, one_day = models
    holdout = champion.holdout()
    gain = _auc(ws, champion, holdout) - _auc(ws, one_day, holdout)
    verdict = _gate(ws, champion, one_day, tmp_path, significance="require_better")
    check = _statistical(verdict)
    assert check.passed and check.name == "AUC vs champion, 95% CI low"
    assert check.value == check.statistics["low"] > 0
    assert check.statistics["difference"] == pytest.approx(gain, abs=1e-9)
    assert [c.name for c in verdict.failures] == [], verdict.table()


def test_significance_off_leaves_the_other_checks_alone(models, tmp_path):
    ws, champion, one_day = models
    tested = _gate(ws, one_day, champion, tmp_path / "on")
    off = _gate(ws, one_day, champion, tmp_path / "off", significance="off")
    assert not any(c.statistics for c in off.checks)
    assert off.checks == [c for c in tested.checks if not c.statistics]


def test_an_unknown_policy_or_confidence_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"\[gate\]: significance: Input should be "
                                         r"'refuse_worse', 'require_better' or 'off'"):
        build_section("gate", {"significance": "better"}, "[gate]")
    with pytest.raises(ValueError, match=r"\[gate\]: confidence: Input should be less than 1"):
        build_section("gate", {"confidence": 95}, "[gate]")
