"""The shadow comparison: reading recent served rows back, and comparing a candidate's
outputs with the live slot's (binary and regression packs)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from driftline.packs import load_pack
from driftline.serving.schema import prediction_items, prediction_key
from driftline.serving.verify import (
    DeployError,
    _tail_lines,
    recent_served_rows,
    shadow_compare,
)
from driftline.settings import ServingSettings

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
    assert result == {"rows": 5, "mean_abs_diff": 4.0, "max_abs_diff": 10.0,
                      "relative_diff": 0.2, "threshold": 0.25}
    assert candidate_calls == live_calls == [2, 2, 1]  # in batches, every row once

    with pytest.raises(DeployError, match=re.escape(
            "slot green: shadow comparison failed: its predictions differ from the live "
            "slot's by 20.00% of the live mean on 5 recent served rows (20.00% > 15.00% "
            "allowed, over by 5.00%); mean |difference| 4.0")):
        shadow_compare(pack, slot_answering(pack, candidate, []),
                       slot_answering(pack, live, []), rows,
                       ServingSettings(shadow_max_relative_diff=0.15), "slot green")
    # the binary limit does not apply to a regression pack
    loose_binary = ServingSettings(shadow_max_disagreement=0.0, shadow_max_relative_diff=0.2)
    assert shadow_compare(pack, slot_answering(pack, candidate, []),
                          slot_answering(pack, live, []), rows, loose_binary,
                          "slot green")["relative_diff"] == 0.2


def test_binary_shadow_counts_rows_whose_call_differs(flights_pack):
    rows = [{"distance": float(d)} for d in range(1, 9)]
    live = {float(d): p for d, p in zip(range(1, 9), (0.1, 0.2, 0.6, 0.7, 0.49, 0.51, 0.9,
                                                      0.3), strict=True)}
    candidate = {**live, 1.0: 0.15, 5.0: 0.5, 6.0: 0.45}  # rows 5 and 6 change their call
    # by hand: 2 of 8 calls differ -> 0.25; |differences| 0.05, 0.01, 0.06 over 8 rows
    result = shadow_compare(flights_pack, slot_answering(flights_pack, candidate, []),
                            slot_answering(flights_pack, live, []), rows,
                            ServingSettings(shadow_max_disagreement=0.25), "slot blue")
    assert result == {"rows": 8, "mean_abs_diff": round(0.12 / 8, 4), "max_abs_diff": 0.06,
                      "disagreement": 0.25, "threshold": 0.25}
    with pytest.raises(DeployError, match=r"slot blue: shadow comparison failed: its call "
                                          r"differs from the live slot's on 2 of 8 recent "
                                          r"served rows \(25.00% > 20.00% allowed"):
        shadow_compare(flights_pack, slot_answering(flights_pack, candidate, []),
                       slot_answering(flights_pack, live, []), rows,
                       ServingSettings(shadow_max_disagreement=0.2), "slot blue")
