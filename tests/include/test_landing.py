import datetime as dt

import pytest
from driftline.sources import LANDING_COLUMNS, landing_path, read_landing_file, replay


def test_replay_drops_one_file_per_day_with_the_days_flights(tmp_path, flights):
    written = replay(tmp_path, dt.date(2013, 2, 1), dt.date(2013, 2, 3))
    assert [p.name for p in written] == [f"flights_2013-02-0{i}.csv" for i in (1, 2, 3)]
    day = read_landing_file(landing_path(tmp_path, dt.date(2013, 2, 2)))
    expected = flights[(flights.month == 2) & (flights.day == 2)]
    assert list(day.columns) == LANDING_COLUMNS
    assert len(day) == len(expected) > 500
    assert set(day["origin"]) == {"EWR", "JFK", "LGA"}
    assert day["temp"].notna().mean() > 0.9  # weather joined on origin + hour


def test_replay_keeps_existing_files_unless_overwrite(tmp_path):
    replay(tmp_path, dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    path = landing_path(tmp_path, dt.date(2013, 1, 1))
    path.write_text("changed upstream")
    assert replay(tmp_path, dt.date(2013, 1, 1), dt.date(2013, 1, 1)) == []
    assert path.read_text() == "changed upstream"
    assert replay(tmp_path, dt.date(2013, 1, 1), dt.date(2013, 1, 1), overwrite=True) == [path]


def test_missing_landing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"flights_2013-01-09\.csv"):
        read_landing_file(landing_path(tmp_path, dt.date(2013, 1, 9)))
