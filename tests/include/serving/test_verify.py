"""The shadow comparison: reading recent served rows back, and comparing a candidate's
outputs with the live slot's (binary and regression packs) with a confidence interval: only
a lower bound over the limit refuses. Wilson intervals are checked against statsmodels."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from driftline.packs import load_pack
from driftline.registry import Registry
from driftline.serving.schema import prediction_items, prediction_key
from driftline.serving.verify import (
    DeployError,
    _tail_lines,
    recent_served_rows,
    shadow_compare,
)
from driftline.settings import ServingSettings
from statsmodels.stats.proportion import proportion_confint

from tests.helpers import PACKS


@pytest.mark.parametrize("count", [1, 5, 500, 19_999, 20_000, 30_000])
def test_tail_lines_reads_backwards_and_skips_a_partial_line(tmp_path, count):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(json.dumps({"i": i, "pad": "x" * (i % 50)}).encode() + b"\n"
                              for i in range(20_000)) + b'{"i": 20000, "pa')
    got = [json.loads(line)["i"] for line in _tail_lines(path, count, block=4096)]
    assert got == list(range(20_000))[-count:]


def test_recent_served_rows_newest_file_first(tmp_path):
    root = tmp_path / "predictions"
    for day, (name, first) in enumerate([("blue-1.jsonl", 0), ("green-2.jsonl", 100)], 1):
        path = root / f"date=2013-01-0{day}" / name
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"a": first + i, "b": 0, "extra": 1}) + "\n"
                                for i in range(10)))
        os.utime(path, (day, day))  # green-2 is the newer file
    rows = recent_served_rows(tmp_path, 13, ["a", "b"])
    assert [r["a"] for r in rows] == [109, 108, 107, 106, 105, 104, 103, 102, 101, 100, 9, 8, 7]
    assert rows[0] == {"a": 109, "b": 0}
    assert recent_served_rows(tmp_path, 0, ["a"]) == []


def regression_pack(tmp_path: Path):
    """The flights pack turned into a regression pack: predict ``arr_delay`` itself."""
    directory = tmp_path / "delays"
    shutil.copytree(PACKS / "flights", directory, ignore=shutil.ignore_patterns("__pycache__"))
    spec = directory / "pack.toml"
    text = spec.read_text()
    for old, new in [('name = "flights"', 'name = "delays"'),
                     ('task = "binary"', 'task = "regression"'),
                     ('primary_metric = "auc"', 'primary_metric = "rmse"'),
                     ('rule = "> 15"', 'rule = "value"'),
                     ('name = "late"', 'name = "delay_minutes"'),
                     ("floors = {auc = 0.60}", "floors = {}"),
                     ("max_worsening = {auc = 0.01, logloss = 0.02}", "max_worsening = {}")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    spec.write_text(text)
    pack = load_pack(directory)
    assert (pack.task, pack.metric, prediction_key(pack)) == ("regression", "rmse",
                                                             "delay_minutes")
    return pack


def slot_answering(pack, outputs: dict[float, float], calls: list[int]):
    """A ``predict`` callable answering like a slot of ``pack``: each row's output is looked
    up by the row's ``distance``; ``calls`` records each request's row count."""

    def predict(rows: list[dict]) -> dict:
        calls.append(len(rows))
        return {"model_version": "v", "predictions": prediction_items(
            pack, [outputs[row["distance"]] for row in rows])}

    return predict


def wilson(count: int, rows: int) -> tuple[float, float]:
    """The 95% Wilson interval of ``count / rows``, by statsmodels."""
    low, high = proportion_confint(count, rows, alpha=0.05, method="wilson")
    return float(low), float(high)


def test_regression_shadow_compares_the_relative_mean_difference(tmp_path):
    pack = regression_pack(tmp_path)
    rows = [{"distance": d} for d in (100.0, 200.0, 300.0, 400.0, 500.0)]
    live = {100.0: 10.0, 200.0: -20.0, 300.0: 30.0, 400.0: 40.0, 500.0: 0.0}
    candidate = {100.0: 12.0, 200.0: -20.0, 300.0: 27.0, 400.0: 50.0, 500.0: -5.0}
    # by hand: |differences| 2, 0, 3, 10, 5 -> mean 4.0; mean |live| (10+20+30+40+0)/5 = 20
    # -> relative difference 4.0 / 20 = 0.2
    candidate_calls, live_calls = [], []
    result = shadow_compare(pack, slot_answering(pack, candidate, candidate_calls),
                            slot_answering(pack, live, live_calls), rows,
                            ServingSettings(shadow_max_relative_diff=0.25), "slot green",
                            batch_rows=2)
    low, high = result.pop("ci_low"), result.pop("ci_high")
    assert result == {"rows": 5, "mean_abs_diff": 4.0, "max_abs_diff": 10.0,
                      "relative_diff": 0.2, "threshold": 0.25, "confidence": 0.95}
    assert low < 0.2 < high
    assert candidate_calls == live_calls == [2, 2, 1]  # in batches, every row once

    # five rows leave much in doubt: a limit under 20% but above the lower bound passes
    between = round((low + 0.2) / 2, 4)
    assert shadow_compare(pack, slot_answering(pack, candidate, []),
                          slot_answering(pack, live, []), rows,
                          ServingSettings(shadow_max_relative_diff=between),
                          "slot green")["ci_low"] == low  # seeded: the same interval
    below = round(low - 0.01, 4)
    with pytest.raises(DeployError, match=re.escape(
            "slot green: shadow comparison failed: its predictions differ from the live "
            "slot's by 20.00% of the live mean on 5 recent served rows (20.00%, 95% CI "
            f"{low:.2%} to {high:.2%}: its lower bound {low:.2%} > {below:.2%} allowed, over "
            f"by {low - below:.2%}); mean |difference| 4.0")):
        shadow_compare(pack, slot_answering(pack, candidate, []),
                       slot_answering(pack, live, []), rows,
                       ServingSettings(shadow_max_relative_diff=below), "slot green")
    # the binary limit does not apply to a regression pack
    loose_binary = ServingSettings(shadow_max_disagreement=0.0, shadow_max_relative_diff=0.2)
    assert shadow_compare(pack, slot_answering(pack, candidate, []),
                          slot_answering(pack, live, []), rows, loose_binary,
                          "slot green")["relative_diff"] == 0.2


def test_regression_shadow_passes_the_same_values_and_refuses_double_values(tmp_path):
    """Twice the live prediction on every row: the relative difference is exactly 1 in every
    resample, so the interval is [1, 1]; the same predictions: [0, 0]."""
    pack = regression_pack(tmp_path)
    rows = [{"distance": d} for d in (100.0, 200.0, 300.0, 400.0, 500.0)]
    live = {100.0: 10.0, 200.0: -20.0, 300.0: 30.0, 400.0: 40.0, 500.0: 1.0}
    same = shadow_compare(pack, slot_answering(pack, live, []), slot_answering(pack, live, []),
                          rows, ServingSettings(shadow_max_relative_diff=0.0), "slot blue")
    assert (same["relative_diff"], same["ci_low"], same["ci_high"]) == (0, 0, 0)
    double = {d: 2 * v for d, v in live.items()}
    with pytest.raises(DeployError, match=re.escape(
            "(100.00%, 95% CI 100.00% to 100.00%: its lower bound 100.00% > 25.00% allowed")):
        shadow_compare(pack, slot_answering(pack, double, []), slot_answering(pack, live, []),
                       rows, ServingSettings(), "slot blue")


def test_binary_shadow_counts_rows_whose_call_differs(flights_pack):
    rows = [{"distance": float(d)} for d in range(1, 9)]
    live = {float(d): p for d, p in zip(range(1, 9), (0.1, 0.2, 0.6, 0.7, 0.49, 0.51, 0.9,
                                                      0.3), strict=True)}
    candidate = {**live, 1.0: 0.15, 5.0: 0.5, 6.0: 0.45}  # rows 5 and 6 change their call
    # by hand: 2 of 8 calls differ -> 0.25; |differences| 0.05, 0.01, 0.06 over 8 rows
    low, high = wilson(2, 8)
    result = shadow_compare(flights_pack, slot_answering(flights_pack, candidate, []),
                            slot_answering(flights_pack, live, []), rows,
                            ServingSettings(shadow_max_disagreement=0.2), "slot blue")
    assert result == {"rows": 8, "mean_abs_diff": round(0.12 / 8, 4), "max_abs_diff": 0.06,
                      "disagreement": 0.25, "threshold": 0.2, "confidence": 0.95,
                      "ci_low": round(low, 4), "ci_high": round(high, 4)}
    # 25% > 20% on 8 rows is not enough to refuse: only a lower bound over the limit is
    below = round(low - 0.01, 4)
    with pytest.raises(DeployError, match=re.escape(
            f"slot blue: shadow comparison failed: its call differs from the live slot's on "
            f"2 of 8 recent served rows (25.00%, 95% CI {low:.2%} to {high:.2%}: its lower "
            f"bound {low:.2%} > {below:.2%} allowed, over by {low - below:.2%})")):
        shadow_compare(flights_pack, slot_answering(flights_pack, candidate, []),
                       slot_answering(flights_pack, live, []), rows,
                       ServingSettings(shadow_max_disagreement=below), "slot blue")


def slot_of(pack, outputs: np.ndarray):
    """A ``predict`` callable answering each row ``{"i": k}`` with ``outputs[k]``."""

    def predict(rows: list[dict]) -> dict:
        return {"model_version": "v", "predictions": prediction_items(
            pack, [float(outputs[row["i"]]) for row in rows])}

    return predict


@pytest.fixture(scope="module")
def holdout_probabilities(model_home, reference_probabilities):
    """v0001's and v0002's probabilities (20 and 30 boosting rounds on the same six days)
    for v0001's holdout rows, computed without driftline's feature code."""
    v1, v2 = (Registry(model_home / "registry", "flights").get(v) for v in ("v0001", "v0002"))
    holdout = v1.holdout()
    return reference_probabilities(v1, holdout), reference_probabilities(v2, holdout)


def test_an_identical_model_passes_and_an_inverted_one_is_refused(flights_pack,
                                                                 holdout_probabilities):
    """500 served rows, as ``shadow_rows`` sends. The live model's own probabilities: no call
    differs, and even a limit of 1% passes. Its probabilities inverted (the label encoded the
    other way round): every call differs, refused at the shipped 25%."""
    p1, _ = holdout_probabilities
    p1 = p1[:500]
    assert len(p1) == 500 and not np.any(p1 == 0.5)
    rows = [{"i": k} for k in range(500)]
    same = shadow_compare(flights_pack, slot_of(flights_pack, p1), slot_of(flights_pack, p1),
                          rows, ServingSettings(shadow_max_disagreement=0.01), "slot green")
    assert (same["disagreement"], same["ci_low"]) == (0, 0)
    assert same["ci_high"] == round(wilson(0, 500)[1], 4) < 0.01
    low, high = wilson(500, 500)
    with pytest.raises(DeployError, match=re.escape(
            f"on 500 of 500 recent served rows (100.00%, 95% CI {low:.2%} to {high:.2%}: its "
            f"lower bound {low:.2%} > 25.00% allowed, over by {low - 0.25:.2%})")):
        shadow_compare(flights_pack, slot_of(flights_pack, 1 - p1), slot_of(flights_pack, p1),
                       rows, ServingSettings(), "slot green")


def test_a_retrain_over_the_limit_on_100_rows_is_refused_only_past_its_lower_bound(
        flights_pack, holdout_probabilities):
    """v0002 against v0001 on 100 served rows, 4 of which they call differently: 4% is over
    a 3% limit, but the interval (1.6% to 9.8%) reaches below it, so it passes; a limit under
    the lower bound refuses."""
    p1, p2 = holdout_probabilities
    differ = np.flatnonzero((p1 >= 0.5) != (p2 >= 0.5))
    same = np.flatnonzero((p1 >= 0.5) == (p2 >= 0.5))
    assert differ.size >= 4, "v0001 and v0002 must disagree somewhere for this test"
    picked = np.concatenate([differ[:4], same[:96]])
    rows = [{"i": int(k)} for k in picked]
    candidate, live = slot_of(flights_pack, p2), slot_of(flights_pack, p1)
    low, high = wilson(4, 100)
    result = shadow_compare(flights_pack, candidate, live, rows,
                            ServingSettings(shadow_max_disagreement=0.03), "slot green")
    assert (result["disagreement"], result["ci_low"], result["ci_high"]) == (
        0.04, round(low, 4), round(high, 4))
    assert result["ci_low"] < 0.03 < result["disagreement"]
    with pytest.raises(DeployError, match=re.escape(
            f"on 4 of 100 recent served rows (4.00%, 95% CI {low:.2%} to {high:.2%}: its lower "
            f"bound {low:.2%} > 1.00% allowed")):
        shadow_compare(flights_pack, candidate, live, rows,
                       ServingSettings(shadow_max_disagreement=0.01), "slot green")
