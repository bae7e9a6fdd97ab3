"""The quality checks (pandas counts) give Evidently 0.7's figures and verdicts, check by
check and in the same order, on real intervals of both packs, on damaged ones and on a
resampled million-row day."""

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from driftline.landing import read_landing_file, replay
from driftline.packs import load_pack
from driftline.settings import ValidationSettings
from driftline.validation import evidently_quality_checks, quality_checks

from tests.helpers import PACKS, workspace_at

FLIGHT_DAYS = [dt.date(2013, 1, 1), dt.date(2013, 3, 5), dt.date(2013, 7, 4)]


def _both(pack, frame, start, limits=None):
    limits = limits or ValidationSettings()
    return (quality_checks(pack, frame, limits, start),
            evidently_quality_checks(pack, frame, limits, start))


def _assert_same(fast, stock):
    assert [dataclasses.astuple(c) for c in fast] == [dataclasses.astuple(c) for c in stock]


@pytest.fixture(scope="module")
def flight_days(tmp_path_factory, flights):
    ws = workspace_at(tmp_path_factory.mktemp("landing"))
    frames = {}
    for day in FLIGHT_DAYS:
        replay(ws, day, day, source=flights)
        frames[day] = read_landing_file(ws.pack, ws.landing_path(day))
    return ws.pack, frames


@pytest.mark.parametrize("day", FLIGHT_DAYS, ids=str)
def test_real_flight_days_give_evidentlys_checks(flight_days, day):
    pack, frames = flight_days
    fast, stock = _both(pack, frames[day], day)
    _assert_same(fast, stock)
    assert len(fast) > 30 and all(c.passed for c in fast)


def test_a_damaged_day_fails_the_same_checks_by_the_same_figures(flight_days):
    pack, frames = flight_days
    day = FLIGHT_DAYS[1]
    frame = frames[day].copy()
    rows = frame.index
    frame.loc[rows[:40], "humid"] = 250.0            # out of range
    frame.loc[rows[40:90], "dep_delay"] = np.nan     # nulls
    frame.loc[rows[90:95], "time_hour"] = "2013-03-07T10:00:00Z"  # outside the interval
    frame.loc[rows[95:97], "time_hour"] = "not a time"
    frame.loc[rows[97:99], "origin"] = None
    fast, stock = _both(pack, frame, day)
    _assert_same(fast, stock)
    failed = {(c.name, c.column) for c in fast if not c.passed}
    assert ("out-of-range share [0.0, 100.0]", "humid") in failed
    assert ("share of rows outside the data interval", None) in failed
    assert ("share of rows whose time does not parse", None) in failed
    assert ("null share", "origin") in failed


def test_unknown_categories_and_a_small_file_agree(tmp_path, flight_days):
    spec = (PACKS / "flights" / "pack.toml").read_text()
    declared = 'origin = {type = "category", nullable = false}'
    assert declared in spec
    (tmp_path / "trial").mkdir()
    for item in (PACKS / "flights").iterdir():
        if item.name != "pack.toml":
            (tmp_path / "trial" / item.name).symlink_to(item)
    (tmp_path / "trial" / "pack.toml").write_text(
        spec.replace('name = "flights"', 'name = "trial"').replace(
            declared, declared[:-1] + ', categories = ["EWR", "JFK", "LGA"]}'))
    pack = load_pack(tmp_path / "trial")
    _, frames = flight_days
    frame = frames[FLIGHT_DAYS[0]].copy()
    frame.loc[frame.index[:7], "origin"] = "BOS"
    for rows in (frame, frame.head(5)):
        fast, stock = _both(pack, rows, FLIGHT_DAYS[0])
        _assert_same(fast, stock)
        assert not next(c for c in fast if c.column == "origin" and "category" in c.name).passed


def test_bikes_months_give_evidentlys_checks():
    pack = load_pack(PACKS / "bikes")
    rows = pack.load_source()
    dates = pack.local_dates(rows[pack.time_column])
    for first in (dt.date(2011, 1, 1), dt.date(2012, 7, 1)):
        month = (dates >= np.datetime64(first)) & (
            dates < np.datetime64(pack.interval_end(first)))
        frame = rows[month].reset_index(drop=True)
        fast, stock = _both(pack, frame, first)
        _assert_same(fast, stock)
        assert fast and all(c.passed for c in fast)
        outside, _ = _both(pack, frame, pack.interval_end(first))  # the wrong month
        assert not next(c for c in outside
                        if c.name == "share of rows outside the data interval").passed


def test_a_resampled_million_row_day_gives_evidentlys_checks(flight_days):
    pack, frames = flight_days
    day = FLIGHT_DAYS[2]
    big = frames[day].sample(1_000_000, replace=True, random_state=7).reset_index(drop=True)
    big.loc[big.index[::997], "humid"] = 250.0
    fast, stock = _both(pack, big, day, ValidationSettings(max_out_of_range_share=0.0005))
    _assert_same(fast, stock)
    assert not next(c for c in fast if c.column == "humid" and "range" in c.name).passed
    assert pd.Series([c.passed for c in fast]).sum() == len(fast) - 1
