"""Ingest of one day: the stock path (quality checks as an Evidently report, pandas canonical
frame, ``to_parquet``, ``Repo.add`` + ``Repo.push``, as ingest did before) against the
current one (the checks as pandas counts, ``canonical_table``, ``write_parquet``,
``dvc_add_one``), and the per-day cost of DVC versioning as partitions accumulate.

    python bench/bench_ingest.py [--rows 1000000] [--partitions 30,365,1000]

Day cases: a real flights day (2013-03-05) and a day resampled from all 2013 flights with
replacement (seed 0) to ``--rows`` rows, moved to that local day (hour of day kept, flight
numbers renumbered so keys stay distinct): "resampled". Each path of each case runs in its
own process, which reads the frame (as ``read_landing_file`` gave it), imports pandas, DVC
and Evidently, writes one warm-up day, resets its peak RSS and then times validation,
canonicalisation and write + version (Parquet, DVC add, push, git commit) of the day; both
paths must store the same md5 and give the same validation checks.

Scale cases: a data repository with N existing one-row partitions (built once per N with one
``Repo.add`` of all of them), copied per path; each path then writes 3 real flights days
(other days per path) into its copy, in its own process after a warm-up write elsewhere;
the median is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY = dt.date(2013, 3, 5)
WARM_UP_DAY = dt.date(2013, 3, 4)
# each path its own real days, so neither finds its objects in the shared remote already
SCALE_DAYS = {"stock": (dt.date(2013, 2, 5), dt.date(2013, 2, 6), dt.date(2013, 2, 7)),
              "new": (dt.date(2013, 2, 12), dt.date(2013, 2, 13), dt.date(2013, 2, 14))}


def stock_write_partition(repo, day: dt.date, rows):
    """``DataRepo.write_partition`` as it was before ``driftline.partitions``: pandas
    ``canonical_frame``, ``DataFrame.to_parquet``, ``Repo.add`` and ``Repo.push`` of the
    target, git commit. Returns ``(md5, changed, seconds of canonicalisation)``."""
    from driftline.versioning import canonical_frame
    from dvc.repo import Repo

    repo.ensure()
    started = time.perf_counter()
    frame = canonical_frame(repo.pack, rows)
    canonical_s = time.perf_counter() - started
    target = repo.partition_path(day)
    with repo._writer_lock():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        os.replace(tmp, target)
        with Repo(str(repo.root)) as dvc:
            dvc.add(str(target))
            dvc.push(targets=[str(target)])
        dvc_file = target.with_name(target.name + ".dvc")
        repo._git("add", str(dvc_file), str(target.parent / ".gitignore"))
        changed = bool(repo._git("status", "--porcelain", "--", str(target.parent)))
        if changed:
            repo._git("commit", "-q", "-m", f"Ingest {repo.pack.name} {day}: {len(frame)} rows")
    md5 = next(line.split(":", 1)[1].strip() for line in dvc_file.read_text().splitlines()
               if line.strip().lstrip("- ").startswith("md5:"))
    return md5, changed, canonical_s


def _pack():
    from driftline.packs import load_pack

    return load_pack(ROOT / "packs" / "flights")


def _day_rows(source, day: dt.date):
    return source[(source.month == day.month) & (source.day == day.day)]


def resampled_day(source, pack, day: dt.date, rows: int):
    """``rows`` flights drawn from ``source`` with replacement (seed 0), moved to ``day``."""
    import numpy as np
    import pandas as pd
    from driftline.packs.timeline import local_times

    rng = np.random.default_rng(0)
    frame = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
    hours = local_times(frame["time_hour"], pack.spec.time).dt.hour.to_numpy()
    midnight = pd.Timestamp(day.isoformat()).tz_localize(pack.spec.time.timezone)
    stamps = (midnight + pd.to_timedelta(hours, "h")).tz_convert("UTC")
    frame["time_hour"] = stamps.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame["year"], frame["month"], frame["day"] = day.year, day.month, day.day
    frame["flight"] = np.arange(rows) % 99999 + 1
    return frame


def _landing_frame(rows, folder: Path):
    """``rows`` as ``read_landing_file`` gives them (through the pack's CSV landing file)."""
    from driftline.landing import read_landing_file, write_landing_file

    pack = _pack()
    path = folder / "landing.csv"
    write_landing_file(pack, rows, path)
    return read_landing_file(pack, path)



def _write(path: str, repo, day: dt.date, rows) -> tuple[str, bool, float]:
    from driftline.partitions import canonical_table

    if path == "stock":
        return stock_write_partition(repo, day, rows)
    started = time.perf_counter()
    table = canonical_table(repo.pack, rows)
    canonical_s = time.perf_counter() - started
    version = repo.store(day, table)
    return version.md5, version.changed, canonical_s


def day_worker(path: str, folder: Path) -> dict:
    """Validate, canonicalise and store the day in ``folder`` by ``path``, in this process."""
    import evidently.presets  # noqa: F401  (imported before the clock, as in a warm worker)
    import memory  # bench/memory.py: this file runs as a script, bench/ is on sys.path
    import pandas as pd
    from driftline import validation
    from driftline.validation import validate_landing_frame
    from driftline.versioning import DataRepo
    from dvc.repo import Repo  # noqa: F401

    if path == "stock":  # the checks as they ran before: an Evidently report with tests
        validation.quality_checks = validation.evidently_quality_checks

    pack = _pack()
    rows = pd.read_pickle(folder / "day.pkl")
    work = Path(tempfile.mkdtemp(prefix=f"{path}-", dir=folder))
    repo = DataRepo(pack, work / "repo", str(work / "remote"))
    _write(path, repo, WARM_UP_DAY, rows.head(100).assign(day=WARM_UP_DAY.day))
    reset = memory.reset_peak()
    started = time.perf_counter()
    result = validate_landing_frame(pack, rows, "landing.csv", start=DAY)
    validation_s = time.perf_counter() - started
    md5, changed, canonical_s = _write(path, repo, DAY, rows)
    total_s = time.perf_counter() - started
    return {"path": path, "passed": result.passed, "md5": md5,
            "checks": [dataclasses.astuple(c) for c in result.checks], "changed": changed,
            "validation_s": validation_s, "canonical_s": canonical_s,
            "write_s": total_s - validation_s - canonical_s, "total_s": total_s,
            "rows_per_s": len(rows) / total_s, "peak_mb": memory.peak_mb(reset),
            "peak_is_the_days": reset}


def scale_worker(path: str, folder: Path) -> dict:
    """Write the scale days into the repository copy in ``folder`` by ``path``."""
    import pandas as pd
    from driftline.versioning import DataRepo

    pack = _pack()
    source = pd.read_pickle(folder.parent.parent / "source.pkl")
    scratch = Path(tempfile.mkdtemp(dir=folder))
    _write(path, DataRepo(pack, scratch / "repo", str(scratch / "remote")), WARM_UP_DAY,
           _day_rows(source, WARM_UP_DAY))
    repo = DataRepo(pack, folder / "repo", str(folder.parent / "remote"))
    seconds = []
    for day in SCALE_DAYS[path]:
        rows = _day_rows(source, day)
        started = time.perf_counter()
        _write(path, repo, day, rows)
        seconds.append(time.perf_counter() - started)
    return {"path": path, "seconds": seconds}


def _run(kind: str, path: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", kind, "--path", path,
                           "--folder", str(folder)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise RuntimeError(f"{kind} worker {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_repo(pack, folder: Path, partitions: int) -> Path:
    """A data repository with ``partitions`` one-row days, added with one ``Repo.add``."""
    import pandas as pd
    from driftline.versioning import DataRepo
    from dvc.repo import Repo

    repo = DataRepo(pack, folder / "repo", str(folder / "remote"))
    repo.ensure()
    first = dt.date(2010, 1, 1)
    targets = []
    for i in range(partitions):
        target = repo.partition_path(first + dt.timedelta(days=i))
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"x": [float(i)]}).to_parquet(target, index=False)
        targets.append(str(target))
    with Repo(str(repo.root)) as dvc:
        dvc.add(targets)
        dvc.push()
    repo._git("add", "-A")
    repo._git("commit", "-q", "-m", f"{partitions} partitions")
    return folder / "repo"


DAY_COLUMNS = [("case", "case", "<36", ""), ("path", "path", "<6", ""),
               ("valid. s", "validation_s", ">8", ".2f"), ("canon. s", "canonical_s", ">8", ".2f"),
               ("write+version s", "write_s", ">15", ".2f"), ("total s", "total_s", ">7", ".2f"),
               ("rows/s", "rows_per_s", ">9", ",.0f"), ("peak MB", "peak_mb", ">7", ".0f"),
               ("same md5, checks", "same", "<16", "")]


def day_cases(source, rows: int, base: Path) -> list[dict]:
    pack = _pack()
    out = []
    for name, frame in (("flights 2013-03-05 (real)", _day_rows(source, DAY)),
                        (f"{rows:,} rows resampled", resampled_day(source, pack, DAY, rows))):
        folder = Path(tempfile.mkdtemp(dir=base))
        _landing_frame(frame, folder).to_pickle(folder / "day.pkl")
        runs = [_run("day", path, folder) for path in ("stock", "new")]
        same = ", ".join("yes" if runs[0][k] == runs[1][k] else "NO" for k in ("md5", "checks"))
        for run in runs:
            case = f"{name}, {len(frame):,} rows" if "real" in name else name
            row = {**{k: v for k, v in run.items() if k != "checks"}, "case": case,
                   "same": same}
            out.append(row)
            print(json.dumps(row), flush=True)
        shutil.rmtree(folder)
    return out


def scale_cases(source, counts: list[int], base: Path) -> list[dict]:
    pack = _pack()
    source.to_pickle(base / "source.pkl")
    out = []
    for count in counts:
        folder = Path(tempfile.mkdtemp(dir=base))
        started = time.perf_counter()
        built = build_repo(pack, folder, count)
        row = {"partitions": count, "build_s": time.perf_counter() - started}
        for path in ("stock", "new"):
            copy = folder / path
            copy.mkdir()
            shutil.copytree(built, copy / "repo", symlinks=True)
            row[path] = statistics.median(_run("scale", path, copy)["seconds"])
        print(json.dumps(row), flush=True)
        out.append(row)
        shutil.rmtree(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the resampled day")
    parser.add_argument("--partitions", default="30,365,1000",
                        help="existing partitions of the scale cases ('' for none)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = day_worker if args.worker == "day" else scale_worker
        print(json.dumps(worker(args.path, args.folder)))
        return

    source = _pack().load_source()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-ingest-") as tmp:
        days = day_cases(source, args.rows, Path(tmp))
        counts = [int(n) for n in args.partitions.split(",") if n]
        scale = scale_cases(source, counts, Path(tmp))
    print()
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}, {} cores".format(
        *os.getloadavg(), os.cpu_count()))
    print(" ".join(f"{title:{width}}" for title, _, width, _ in DAY_COLUMNS))
    for row in days:
        print(" ".join(f"{row[key]:{width}{spec}}" for _, key, width, spec in DAY_COLUMNS))
    if not all(row["peak_is_the_days"] for row in days):
        print("(the peak RSS could not be reset: peak MB is the process's whole peak)")
    if not scale:
        return
    print()
    print("per-day versioning cost, median of 3 real flights days, s")
    print(f"{'partitions':>10} {'stock':>7} {'new':>7}")
    for row in scale:
        print(f"{row['partitions']:>10} {row['stock']:>7.2f} {row['new']:>7.2f}")


if __name__ == "__main__":
    main()
