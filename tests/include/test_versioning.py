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


def _dvc_files(repo_path):
    return {p.relative_to(repo_path): p.read_bytes()
            for p in sorted((repo_path / "partitions").rglob("*.dvc"))}


def test_a_repo_written_by_the_stock_path_is_read_and_appended_to(tmp_path, flights_pack,
                                                                  flights):
    """A day stored by the code before driftline.partitions (bench_ingest's stock path):
    rewriting it is a no-op with the same md5 and ``.dvc`` file, a new day appends."""
    from bench.bench_ingest import stock_write_partition

    repo = _repo(flights_pack, tmp_path)
    d1, d2 = dt.date(2013, 1, 7), dt.date(2013, 1, 8)
    stock_md5, _, _ = stock_write_partition(repo, d1, _rows(flights, d1))
    stock_version, stock_files = repo.head(), _dvc_files(tmp_path / "repo")
    again = repo.write_partition(d1, _rows(flights, d1).sample(frac=1, random_state=4))
    assert (again.md5, again.changed, again.data_version) == (stock_md5, False, stock_version)
    assert _dvc_files(tmp_path / "repo") == stock_files
    new = repo.write_partition(d2, _rows(flights, d2))
    assert new.changed and repo.list_days(new.data_version) == [d1, d2]
    both = repo.read_days(new.data_version, d1, d2)
    assert both.equals(pd.concat([canonical_frame(flights_pack, _rows(flights, d))
                                  for d in (d1, d2)], ignore_index=True).astype(both.dtypes))
    assert repo.read_days(stock_version, d1, d2).equals(repo.read_days(new.data_version, d1, d1))


def test_the_dvc_file_is_the_one_dvc_add_writes(tmp_path, flights_pack, flights):
    from bench.bench_ingest import stock_write_partition

    day = dt.date(2013, 1, 9)
    stock = DataRepo(flights_pack, tmp_path / "stock", str(tmp_path / "stock-remote"))
    stock_write_partition(stock, day, _rows(flights, day))
    new = DataRepo(flights_pack, tmp_path / "new", str(tmp_path / "new-remote"))
    new.write_partition(day, _rows(flights, day))
    assert _dvc_files(tmp_path / "new") == _dvc_files(tmp_path / "stock")
    gitignore = "partitions/date=2013-01-09/.gitignore"
    assert (tmp_path / "new" / gitignore).read_text() == (tmp_path / "stock" /
                                                          gitignore).read_text()
    assert sorted(p.relative_to(tmp_path / "new-remote") for p in
                  (tmp_path / "new-remote").rglob("*") if p.is_file()) == sorted(
        p.relative_to(tmp_path / "stock-remote") for p in
        (tmp_path / "stock-remote").rglob("*") if p.is_file())


def test_a_fresh_clone_reads_each_version_byte_for_byte_from_the_remote(tmp_path,
                                                                        flights_pack, flights):
    """As a training pod does: only the git history and the DVC remote."""
    import dvc.api
    from dvc.repo import Repo

    repo = _repo(flights_pack, tmp_path)
    d1, d2 = dt.date(2013, 1, 14), dt.date(2013, 1, 15)
    v1 = repo.write_partition(d1, _rows(flights, d1))
    first_bytes = repo.partition_path(d1).read_bytes()
    repo.write_partition(d1, _rows(flights, d1).head(100))  # the day replaced
    v2 = repo.write_partition(d2, _rows(flights, d2))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "repo"), str(clone)], check=True)
    path = "partitions/date=2013-01-14/data.parquet"
    assert dvc.api.read(path, repo=str(clone), rev=v1.data_version, mode="rb") == first_bytes
    assert dvc.api.read(path, repo=str(clone), rev=v2.data_version,
                        mode="rb") == repo.partition_path(d1).read_bytes() != first_bytes
    with Repo(str(clone)) as cloned:
        cloned.pull()
    assert (clone / path).read_bytes() == repo.partition_path(d1).read_bytes()
    pod = DataRepo(flights_pack, clone, str(tmp_path / "remote"))
    assert pod.read_days(v1.data_version, d1, d2).equals(repo.read_days(v1.data_version, d1, d2))
    assert len(pod.read_days(v2.data_version, d1, d2)) == 100 + v2.rows
