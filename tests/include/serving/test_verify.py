"""Reading recent served rows back for the shadow comparison."""

from __future__ import annotations

import json
import os

import pytest
from driftline.serving.verify import _tail_lines, recent_served_rows


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
