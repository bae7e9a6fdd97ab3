import datetime as dt

import numpy as np
import pandas as pd
import pytest
from driftline.landing import read_landing_file, replay, write_landing_file

from tests.helpers import workspace_at


def test_replay_drops_one_file_per_day_with_the_days_flights(tmp_path, flights):
    ws = workspace_at(tmp_path)
    written = replay(ws, dt.date(2013, 2, 1), dt.date(2013, 2, 3), source=flights)
    assert [p.name for p in written] == [f"flights_2013-02-0{i}.csv" for i in (1, 2, 3)]
    assert all(p.parent == ws.landing_dir == tmp_path / "landing" / "flights" for p in written)
    day = read_landing_file(ws.pack, ws.landing_path(dt.date(2013, 2, 2)))
    # Expected rows chosen by the calendar fields, not by the time column replay cuts on.
    expected = flights[(flights.month == 2) & (flights.day == 2)]
    assert list(day.columns) == list(ws.pack.spec.columns)
    assert len(day) == len(expected) > 500
    pd.testing.assert_frame_equal(day, expected[list(ws.pack.spec.columns)].reset_index(
        drop=True), check_dtype=False)
    assert set(day["origin"]) == {"EWR", "JFK", "LGA"}
    assert day["temp"].notna().mean() > 0.9  # weather joined on origin + hour
    # Days are cut in New York time (EST, UTC-5): flights scheduled from 19:00 local are
    # already the next day in UTC; counted from the source's local hour column.
    late_evening = int((expected["hour"] >= 19).sum())
    assert day["time_hour"].str.startswith("2013-02-03T").sum() == late_evening == 75


def test_replay_keeps_existing_files_unless_overwrite(tmp_path):
    ws = workspace_at(tmp_path)
    first = dt.date(2013, 1, 1)
    (path,) = replay(ws, first, first)  # the pack's own [source] loader
    assert path == ws.landing_path(first)
    path.write_text("changed upstream")
    assert replay(ws, first, first) == []
    assert path.read_text() == "changed upstream"
    assert replay(ws, first, first, overwrite=True) == [path]
    assert len(read_landing_file(ws.pack, path)) == 842  # flights on 2013-01-01


def test_an_interval_without_rows_gets_no_file(tmp_path, flights):
    ws = workspace_at(tmp_path)
    assert replay(ws, dt.date(2014, 1, 1), dt.date(2014, 1, 2), source=flights) == []
    assert list(ws.landing_dir.iterdir()) == []


def test_missing_landing_file_names_the_file(tmp_path, flights_pack):
    ws = workspace_at(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"flights_2013-01-09\.csv"):
        read_landing_file(flights_pack, ws.landing_path(dt.date(2013, 1, 9)))


def test_an_unreadable_file_is_a_value_error_naming_it(tmp_path, flights_pack):
    path = tmp_path / "flights_2013-01-09.csv"
    path.write_bytes(b'year,month\n2013,"1\n')
    with pytest.raises(ValueError, match=r"flights_2013-01-09\.csv: not a readable csv file"):
        read_landing_file(flights_pack, path)


def test_written_files_read_back_with_text_columns_as_text(tmp_path, flights_pack, flights):
    rows = flights.head(50).copy()
    rows.loc[rows.index[0], "tailnum"] = np.nan
    target = tmp_path / "flights_2013-01-01.csv"
    write_landing_file(flights_pack, rows, target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind
    back = read_landing_file(flights_pack, target)
    assert back["flight"].dtype.kind == "i" and back["time_hour"].dtype == object
    assert back["time_hour"].tolist() == rows["time_hour"].tolist()
    assert back["tailnum"].isna().tolist() == rows["tailnum"].isna().tolist()


@pytest.mark.parametrize("pattern", ["trial_{date}.csv.gz", "trial_{date}.parquet"])
def test_every_declared_format_round_trips(tmp_path, flights, pattern):
    import shutil

    from driftline.packs import load_pack

    from tests.helpers import PACKS

    shutil.copytree(PACKS / "flights", tmp_path / "trial")
    spec = tmp_path / "trial" / "pack.toml"
    spec.write_text(spec.read_text().replace('name = "flights"', 'name = "trial"')
                    .replace('"flights_{date}.csv"', f'"{pattern}"'))
    pack = load_pack(tmp_path / "trial")
    assert pack.spec.landing.format == pattern.split(".", 1)[1]
    rows = flights.head(100)[list(pack.spec.columns)]
    target = tmp_path / pack.landing_name(dt.date(2013, 1, 1))
    assert target.name == pattern.replace("{date}", "2013-01-01")
    write_landing_file(pack, rows, target)
    if pattern.endswith(".gz"):
        assert target.read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(read_landing_file(pack, target), rows, check_dtype=False)
