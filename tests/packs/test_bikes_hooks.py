"""The bikes pack's hooks: the hour-of-day feature and the replay source."""

from __future__ import annotations

import math

import pytest
from driftline.packs import load_pack

from tests.helpers import PACKS


@pytest.fixture(scope="module")
def hooks():
    return load_pack(PACKS / "bikes").hooks


def test_hour_of_day_reads_twelve_hour_clock_text(hooks):
    got = hooks.hour_of_day(["12am", "1am", "11am", "12pm", "1pm", "11pm", " 6AM ", "13pm",
                             "0am", "noon", None, float("nan")])
    assert list(got[:7]) == [0.0, 1.0, 11.0, 12.0, 13.0, 23.0, 6.0]
    assert all(math.isnan(v) for v in got[7:])


def test_the_source_has_every_hour_once_with_its_own_hour_column(hooks):
    rows = hooks.load_rentals()
    assert len(rows) == 17_379 and rows["datetime"].is_unique
    assert rows["datetime"].is_monotonic_increasing
    hours = rows["datetime"].str[11:13].astype(int)
    assert (hours == hooks.hour_of_day(rows["hr"])).all()
    assert (rows["casual"] + rows["registered"] == rows["cnt"]).all()  # why they are excluded
