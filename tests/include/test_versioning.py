import datetime as dt
import multiprocessing
import subprocess

import pandas as pd
import pytest
from driftline.versioning import DataRepo


def _rows(flights, day):
    return flights[(flights.month == day.month) & (flights.day == day.day)]


def test_rewriting_a_day_gives_the_same_hash_and_no_new_commit(tmp_path, flights):
    repo = DataRepo(tmp_path / "repo", str(tmp_path / "remote"))
    day = dt.date(2013, 1, 7)
    first = repo.write_partition(day, _rows(flights, day))
    shuffled = _rows(flights, day).sample(frac=1, random_state=1)
    again = repo.write_partition(day, pd.concat([shuffled, shuffled.head(5)]))  # dupes too
    assert first.changed and not again.changed
    assert again.md5 == first.md5 and again.data_version == first.data_version
    assert again.rows == first.rows == len(_rows(flights, day))
    assert len(repo.read_days(again.data_version, day, day)) == first.rows


def test_a_data_version_pins_exactly_what_was_there(tmp_path, flights):
    repo = DataRepo(tmp_path / "repo", str(tmp_path / "remote"))
    d1, d2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
    v1 = repo.write_partition(d1, _rows(flights, d1)).data_version
    v2 = repo.write_partition(d2, _rows(flights, d2)).data_version
    assert repo.list_days(v1) == [d1]
    assert repo.list_days(v2) == [d1, d2]
    with pytest.raises(LookupError, match="no partition between 2013-01-02"):
        repo.read_days(v1, d2, d2)


def test_remote_holds_the_data_after_the_cache_is_gone(tmp_path, flights):
    repo = DataRepo(tmp_path / "repo", str(tmp_path / "remote"))
    day = dt.date(2013, 1, 3)
    version = repo.write_partition(day, _rows(flights, day))
    subprocess.run(["rm", "-rf", str(tmp_path / "repo" / ".dvc" / "cache")], check=True)
    (tmp_path / "repo" / "flights" / "date=2013-01-03" / "flights.parquet").unlink()
    assert len(repo.read_days(version.data_version, day, day)) == version.rows


def _write(args):
    repo_path, remote, day, rows = args
    return DataRepo(repo_path, remote).write_partition(day, rows).md5


def test_parallel_writers_do_not_collide_on_the_repository_lock(tmp_path, flights):
    """Four processes (like a backfill with --max-active-runs 4) write at once."""
    repo_path, remote = tmp_path / "repo", str(tmp_path / "remote")
    DataRepo(repo_path, remote).ensure()
    days = [dt.date(2013, 1, d) for d in range(10, 14)]
    jobs = [(repo_path, remote, d, _rows(flights, d)) for d in days]
    # spawn, not fork: forking a test process that has threads can deadlock the child
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        md5s = pool.map(_write, jobs)
    repo = DataRepo(repo_path, remote)
    assert repo.list_days(repo.head()) == days
    assert len(set(md5s)) == 4
    log = subprocess.run(["git", "-C", str(repo_path), "log", "--oneline"], text=True,
                         capture_output=True, check=True).stdout
    assert log.count("Ingest flights") == 4
