"""``driftline pack check DIR FILE`` through the real CLI: exit 0 for a file that passes,
2 for one that fails a check (naming it) or cannot be read."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
from driftline.landing import write_landing_file

from tests.helpers import PACKS


def check(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftline.cli", "pack", "check",
                           str(PACKS / "flights"), *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_good_file_passes_and_another_days_rows_exit_2(tmp_path, flights, flights_pack):
    day = pd.to_datetime(flights[["year", "month", "day"]]).dt.date.astype(str)
    rows = flights[day == "2013-01-07"][list(flights_pack.spec.columns)]
    good = tmp_path / "flights_2013-01-07.csv"
    write_landing_file(flights_pack, rows, good)
    passed = check(good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "passed" in passed.stdout and f"{len(rows)} rows" in passed.stdout

    wrong_day = tmp_path / "flights_2013-01-08.csv"  # Jan 7's rows under Jan 8's name
    write_landing_file(flights_pack, rows, wrong_day)
    failed = check(wrong_day)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "share of rows outside the data interval" in failed.stdout
    assert "flights_2013-01-08.csv: FAILED 1 of" in failed.stdout


def test_an_unreadable_file_exits_2_naming_it(tmp_path):
    broken = tmp_path / "flights_2013-01-07.csv"
    broken.write_bytes(b"\x00\x01 not a csv \xff")
    result = check(broken)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "flights_2013-01-07.csv: FAILED" in result.stdout
    assert "not a readable csv file" in result.stdout
