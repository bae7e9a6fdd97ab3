import dataclasses
import datetime as dt
import json
import shutil
import tomllib

import numpy as np
import pandas as pd
import pytest
from driftline.ingest import ingest_interval
from driftline.landing import read_landing_file, replay
from driftline.packs import load_pack
from driftline.settings import ValidationSettings
from driftline.validation import DataValidationError, validate_landing_frame

from tests.helpers import PACKS, TEST_CONFIG, workspace_at

DAY = dt.date(2013, 3, 5)


@pytest.fixture
def day(tmp_path, flights):
    """A real landing day (2013-03-05, 965 flights) as ingest reads it."""
    ws = workspace_at(tmp_path)
    replay(ws, DAY, DAY, source=flights)
    return read_landing_file(ws.pack, ws.landing_path(DAY))


def _validate(pack, frame, limits=None):
    return validate_landing_frame(pack, frame, "f.csv", limits, start=DAY)


def test_a_real_day_passes_every_check(flights_pack, day):
    result = validate_landing_frame(flights_pack, day, "flights_2013-03-05.csv", start=DAY)
    assert result.passed, [c.describe() for c in result.failures]
    assert result.rows == len(day) == 965
    # The checks the spec asks for, read from pack.toml here: per required column a null
    # share (not nullable, or a max_null_share) and an out-of-range share (a range).
    columns = tomllib.loads((PACKS / "flights" / "pack.toml").read_text())["columns"]
    required = {n: c for n, c in columns.items() if c.get("required", True)}
    expected = [("row count", None), ("share of rows outside the data interval", None),
                ("share of rows whose time does not parse", None), ("duplicate row share", None)]
    expected += [("null share", n) for n, c in required.items()
                 if c.get("nullable") is False or "max_null_share" in c]
    expected += [(f"out-of-range share [{float(c['range'][0])}, {float(c['range'][1])}]", n)
                 for n, c in required.items() if "range" in c]
    expected += [("unknown-category share", n) for n, c in required.items() if "categories" in c]
    assert sorted((c.name, c.column or "") for c in result.checks) == sorted(
        (name, column or "") for name, column in expected)
    assert len(expected) == 39


def test_missing_column_fails_naming_it(flights_pack, day):
    result = _validate(flights_pack, day.drop(columns=["dest"]))
    assert not result.passed
    assert [(c.name, c.column) for c in result.failures] == [("required column present", "dest")]


def test_a_missing_optional_column_is_not_a_failure(flights_pack, day):
    assert _validate(flights_pack, day.drop(columns=["tailnum", "air_time"])).passed


def test_wrong_type_fails_naming_column_and_type(flights_pack, day):
    day["distance"] = "far"
    (failure,) = _validate(flights_pack, day).failures
    assert (failure.name, failure.column, failure.threshold) == ("column type", "distance",
                                                                 "numeric")


def test_null_share_over_limit_fails_with_measured_share(flights_pack, day):
    day.loc[day.index[:100], "carrier"] = np.nan
    failures = _validate(flights_pack, day).failures
    assert [(c.name, c.column) for c in failures] == [("null share", "carrier")]
    assert failures[0].value == round(100 / 965, 6)
    assert failures[0].threshold == 0.0


def test_a_column_null_limit_comes_from_its_spec(flights_pack, day):
    """temp allows half its values missing (max_null_share = 0.5 in the pack)."""
    day.loc[day.index[:400], "temp"] = np.nan
    assert _validate(flights_pack, day).passed
    day.loc[day.index[:500], "temp"] = np.nan
    (failure,) = _validate(flights_pack, day).failures
    assert (failure.name, failure.column, failure.threshold) == ("null share", "temp", 0.5)
    assert failure.value == round(500 / 965, 6)


def test_out_of_range_values_fail_over_the_allowed_share(flights_pack, day):
    day.loc[day.index[:20], "humid"] = 250.0
    result = _validate(flights_pack, day, ValidationSettings())
    (failure,) = result.failures
    assert failure.column == "humid" and failure.name == "out-of-range share [0.0, 100.0]"
    assert failure.value == round(20 / 965, 6)
    assert "measured" in failure.describe() and "limit 0.005" in failure.describe()


def test_too_few_rows_fails(flights_pack, day):
    result = _validate(flights_pack, day.head(10))
    assert ("row count", 10.0) in [(c.name, c.value) for c in result.failures]


def test_rows_outside_the_data_interval_fail(flights_pack, day):
    """The interval is the local (New York, EST) day: 05:00Z to 05:00Z the next day."""
    times = ["2013-03-05T05:00:00Z",   # local midnight: inside
             "2013-03-06T04:59:00Z",   # 23:59 local: inside
             "2013-03-06T05:00:00Z",   # the next local midnight: outside
             "2013-03-05T04:59:00Z"]   # 23:59 the day before: outside
    day.loc[day.index[:4], "time_hour"] = times
    (failure,) = _validate(flights_pack, day).failures
    assert (failure.name, failure.column) == ("share of rows outside the data interval", None)
    assert (failure.value, failure.threshold) == (round(2 / 965, 6), 0.0)
    limits = ValidationSettings(max_outside_interval_share=0.0025)
    assert _validate(flights_pack, day, limits).passed


def test_an_unparseable_time_fails(flights_pack, day):
    day.loc[day.index[:3], "time_hour"] = ["not a time", "2013-13-05T10:00:00Z", ""]
    (failure,) = _validate(flights_pack, day).failures
    assert (failure.name, failure.column) == ("share of rows whose time does not parse", None)
    assert failure.value == round(3 / 965, 6)


def test_unknown_categories_over_the_limit_fail_when_a_column_declares_them(tmp_path, day):
    shutil.copytree(PACKS / "flights", tmp_path / "trial")
    spec = tmp_path / "trial" / "pack.toml"
    text = spec.read_text().replace('name = "flights"', 'name = "trial"')
    declared = 'origin = {type = "category", nullable = false}'
    assert declared in text
    spec.write_text(text.replace(declared, 'origin = {type = "category", nullable = false, '
                                           'categories = ["EWR", "JFK", "LGA"]}'))
    pack = load_pack(tmp_path / "trial")
    assert _validate(pack, day).passed
    day.loc[day.index[:4], "origin"] = "BOS"
    (failure,) = _validate(pack, day).failures
    assert (failure.name, failure.column) == ("unknown-category share", "origin")
    assert (failure.value, failure.threshold) == (round(4 / 965, 6), 0.0)
    assert _validate(pack, day, ValidationSettings(max_unknown_category_share=0.005)).passed
    assert not _validate(pack, day, ValidationSettings(max_unknown_category_share=0.004)).passed


def test_a_header_only_file_fails_its_row_count_instead_of_crashing(tmp_path, flights_pack,
                                                                     day):
    ws = workspace_at(tmp_path)
    path = ws.landing_path(DAY)
    path.write_text(",".join(day.columns) + "\n")
    empty = read_landing_file(flights_pack, path)
    assert empty.empty and list(empty.columns) == list(day.columns)
    result = _validate(flights_pack, empty)
    assert [(c.name, c.value, c.passed) for c in result.checks] == [("row count", 0, False)]
    assert result.rows == 0

    with pytest.raises(DataValidationError, match="row count FAILED: measured 0"):
        ingest_interval(ws, DAY)
    assert not path.exists()
    reason = json.loads((ws.quarantine_dir / f"{path.name}.reason.json").read_text())
    assert reason["pack"] == "flights" and reason["failed"] == [
        f"row count FAILED: measured 0, limit >= {ws.validation.min_rows}"]
    assert not ws.data_repo.exists()  # nothing reached the lake


def test_checks_use_the_workspace_limits(tmp_path, day):
    ws = workspace_at(tmp_path)
    day.loc[day.index[:3], "humid"] = 250.0  # 0.31% out of range: under the 0.5% default
    assert _validate(ws.pack, day, ws.validation).passed
    strict = dataclasses.replace(ws.validation, max_out_of_range_share=0.003)
    assert [c.column for c in _validate(ws.pack, day, strict).failures] == ["humid"]


def test_duplicated_rows_fail_or_only_warn_per_the_packs_policy(flights_pack, day):
    twice = pd.concat([day, day], ignore_index=True)  # the same file landed twice, appended
    result = _validate(flights_pack, twice)
    assert [c.describe() for c in result.failures] == [
        "duplicate row share FAILED: measured 0.5, limit 0.01"]
    lenient = ValidationSettings(on_duplicates="warn")
    result = _validate(flights_pack, twice, lenient)
    assert result.passed and result.failures == []
    assert result.to_dict()["warnings"] == [
        "duplicate row share WARNING: measured 0.5, limit 0.01"]
    one_repeat = pd.concat([day, day.iloc[:9]], ignore_index=True)  # 9 of 974: 0.92 %
    assert _validate(flights_pack, one_repeat).passed


def test_a_file_many_times_the_recent_intervals_fails_its_row_count_check(flights_pack, day):
    history = [965, 1001, 930, 988, 950]
    tenfold = pd.concat([day] * 10, ignore_index=True)
    limits = ValidationSettings(max_duplicate_share=1.0)  # only the volume check here
    result = validate_landing_frame(flights_pack, tenfold, "f.csv", limits, start=DAY,
                                    history_rows=history)
    assert [c.describe() for c in result.failures] == [
        "row count / median of the last 5 intervals (965 rows) FAILED: measured 10.0, "
        "limit 3.0"]
    normal = validate_landing_frame(flights_pack, day, "f.csv", limits, start=DAY,
                                    history_rows=history)
    assert normal.passed and "row count / median of the last 5 intervals (965 rows)" in [
        c.name for c in normal.checks]
    warned = validate_landing_frame(flights_pack, tenfold, "f.csv",
                                    ValidationSettings(max_duplicate_share=1.0, on_volume="warn"),
                                    start=DAY, history_rows=history)
    assert warned.passed and len(warned.warnings) == 1


def test_ingest_compares_with_the_packs_own_history_and_refuses_an_oversized_file(
        tmp_path, flights):
    """The history is the row counts of the intervals ingested before, newest first; a file
    over ``max_file_mb`` is quarantined unread and the lake keeps what it had."""
    from driftline.ingest import recent_row_counts
    from driftline.settings import load_settings
    from driftline.workspace import open_workspace

    ws = workspace_at(tmp_path)
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    replay(ws, days[0], days[-1], source=flights)
    rows = {d: len(read_landing_file(ws.pack, ws.landing_path(d))) for d in days}
    for d in days[:3]:
        ingest_interval(ws, d)
    assert recent_row_counts(ws, days[3]) == [rows[days[2]], rows[days[1]], rows[days[0]]]
    assert recent_row_counts(ws, days[1]) == [rows[days[0]]]  # only intervals before
    report = json.loads((ws.reports_dir / "validation" / f"{days[2]}.json").read_text())
    median = sorted(rows[d] for d in days[:2])  # history of days[2]: days[0..1]
    assert any(c["name"].startswith("row count / median of the last 2 intervals")
               and c["value"] == round(rows[days[2]] / (sum(median) / 2), 3)
               for c in report["checks"])

    size_mb = ws.landing_path(days[3]).stat().st_size / 2**20
    config = tmp_path / "strict.toml"
    limit = round(size_mb / 2, 3)
    config.write_text(TEST_CONFIG.read_text() + f"\n[validation]\nmax_file_mb = {limit}\n")
    strict = open_workspace("flights", load_settings(home=tmp_path, config=config,
                                                     packs_dir=PACKS))
    lake = lake_files(ws)
    with pytest.raises(DataValidationError, match=rf"file size \(MiB\) FAILED: measured "
                                                  rf"{round(size_mb, 1)}, limit {limit}"):
        ingest_interval(strict, days[3])
    assert (ws.quarantine_dir / ws.landing_path(days[3]).name).exists()
    assert lake_files(ws) == lake


def lake_files(ws) -> dict:
    """Every file of the data repository's work tree and DVC cache, with its size."""
    return {str(p.relative_to(ws.data_repo)): p.stat().st_size
            for p in ws.data_repo.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_a_carrier_outside_the_flights_vocabulary_is_refused(flights_pack, day):
    """Issue 9: carrier ``ZZ`` passed; the pack now declares its 16 carriers."""
    day.loc[day.index[:2], "carrier"] = "ZZ"
    assert [c.describe() for c in _validate(flights_pack, day).failures] == [
        f"unknown-category share on column 'carrier' FAILED: measured {round(2 / 965, 6)}, "
        "limit 0.0"]


def test_rows_repeating_a_key_with_other_values_count_as_duplicates(flights_pack, day):
    """The same flight (the pack's key) twice is a duplicate even if another column differs."""
    again = day.iloc[:20].assign(dep_delay=day["dep_delay"].iloc[:20] + 1)
    (failure,) = _validate(flights_pack, pd.concat([day, again], ignore_index=True)).failures
    assert (failure.name, failure.value) == ("duplicate row share", round(20 / 985, 6))
