import datetime as dt
import multiprocessing
import subprocess

import numpy as np
import pandas as pd
import pytest
from driftline.packs import load_pack
from driftline.versioning import DataRepo, canonical_frame

from tests.helpers import PACKS


def _rows(flights, day):
    return flights[(flights.month == day.month) & (flights.day == day.day)]


def _repo(pack, tmp_path):
    return DataRepo(pack, tmp_path / "repo", str(tmp_path / "remote"))


def test_rewriting_a_day_gives_the_same_hash_and_no_new_commit(tmp_path, flights_pack,
                                                               flights):
    repo = _repo(flights_pack, tmp_path)
    day = dt.date(2013, 1, 7)
    first = repo.write_partition(day, _rows(flights, day))
    shuffled = _rows(flights, day).sample(frac=1, random_state=1)
    again = repo.write_partition(day, pd.concat([shuffled, shuffled.head(5)]))  # dupes too
    assert first.changed and not again.changed
    assert again.md5 == first.md5 and again.data_version == first.data_version
    assert again.rows == first.rows == len(_rows(flights, day))
    assert first.path == str(tmp_path / "repo" / "partitions" / "date=2013-01-07" /
                             "data.parquet")
    assert len(repo.read_days(again.data_version, day, day)) == first.rows


def test_canonical_frame_is_the_spec_columns_typed_and_sorted(flights_pack, flights):
    raw = flights.head(300).sample(frac=1, random_state=3).drop(columns=["tailnum"])
    frame = canonical_frame(flights_pack, pd.concat([raw, raw.head(7)]))
    assert list(frame.columns) == list(flights_pack.spec.columns)
    assert len(frame) == 300
    assert frame["tailnum"].isna().all()  # an optional column the file lacks: missing
    assert frame["origin"].dtype == "string" and frame["flight"].dtype == np.float64
    expected = flights.head(300).sort_values(flights_pack.sort_key, kind="stable")
    assert frame["flight"].tolist() == expected["flight"].astype(float).tolist()
    assert frame["time_hour"].tolist() == expected["time_hour"].tolist()


def test_a_data_version_pins_exactly_what_was_there(tmp_path, flights_pack, flights):
    repo = _repo(flights_pack, tmp_path)
    d1, d2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
    v1 = repo.write_partition(d1, _rows(flights, d1)).data_version
    v2 = repo.write_partition(d2, _rows(flights, d2)).data_version
    assert repo.list_days(v1) == [d1]
    assert repo.list_days(v2) == [d1, d2]
    assert len(repo.read_days(v1, d1, d2)) == len(_rows(flights, d1))
    with pytest.raises(LookupError, match="no partition between 2013-01-02"):
        repo.read_days(v1, d2, d2)


def test_remote_holds_the_data_after_the_cache_is_gone(tmp_path, flights_pack, flights):
    repo = _repo(flights_pack, tmp_path)
    day = dt.date(2013, 1, 3)
    version = repo.write_partition(day, _rows(flights, day))
    subprocess.run(["rm", "-rf", str(tmp_path / "repo" / ".dvc" / "cache")], check=True)
    repo.partition_path(day).unlink()
    assert len(repo.read_days(version.data_version, day, day)) == len(_rows(flights, day))


def _write(args):
    repo_path, remote, day, rows = args
    pack = load_pack(PACKS / "flights")  # a Pack holds its hooks module: load it here
    return DataRepo(pack, repo_path, remote).write_partition(day, rows).md5


def test_parallel_writers_do_not_collide_on_the_repository_lock(tmp_path, flights_pack,
                                                                flights):
    """Four processes (like a backfill with --max-active-runs 4) write at once."""
    repo_path, remote = tmp_path / "repo", str(tmp_path / "remote")
    DataRepo(flights_pack, repo_path, remote).ensure()
    days = [dt.date(2013, 1, d) for d in range(10, 14)]
    jobs = [(repo_path, remote, d, _rows(flights, d)) for d in days]
    # spawn, not fork: forking a test process that has threads can deadlock the child
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        md5s = pool.map(_write, jobs)
    repo = DataRepo(flights_pack, repo_path, remote)
    assert repo.list_days(repo.head()) == days
    assert len(set(md5s)) == 4
    log = subprocess.run(["git", "-C", str(repo_path), "log", "--oneline"], text=True,
                         capture_output=True, check=True).stdout
    assert log.count("Ingest flights") == 4
