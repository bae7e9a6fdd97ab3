"""The drift check: Evidently's ``DataDriftPreset`` against driftline's figures
(``driftline.stattests``, what ``feature_drift`` computes) on the same frames.

    python bench/bench_drift.py [--rows 1000000] [--packs flights,bikes] [--no-html]

Cases: real month pairs of both packs (each pack's features, as monitoring builds them),
and one pair per pack resampled with replacement (seed 0) to ``--rows`` rows per side,
named "resampled". Each path of each case runs in its own process, which reads the two
frames from Parquet, imports pandas, scipy and Evidently, then resets its peak RSS (Linux
``/proc/self/clear_refs``) and runs the call, so a peak is that call's own (the frames
included; ``frames MB`` is the RSS before the call, ``call MB`` what driftline's call added
to it). Paths:

- ``evidently``: ``Report([DataDriftPreset(threshold=0.3)], include_tests=True).run()`` and
  its ``dict()``: the figures as ``feature_drift`` computed them before;
- ``driftline``: ``feature_drift`` without report files: the figures on all rows;
- ``+html`` (unless ``--no-html``): ``feature_drift`` writing the HTML report too, which is
  Evidently's on a fixed-seed sample of 10,000 rows per side (what monitoring runs).

``same`` says whether both paths gave the same drifted columns and share, and the largest
per-column score difference. Prints one row per case and a JSON line per case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.3  # both packs' [monitor] column_drift_threshold

HALF_2011 = tuple(f"2011-{m:02d}" for m in range(1, 7))  # the bikes pack's history
# (pack, current months, reference months, resample)
CASES = [
    ("flights", ("2013-07",), ("2013-01",), False),
    ("flights", ("2013-10",), ("2013-05",), False),
    ("flights", ("2013-07",), ("2013-01",), True),
    ("bikes", ("2011-07",), HALF_2011, False),
    ("bikes", ("2012-07",), ("2011-07", "2011-08"), False),
    ("bikes", ("2011-07",), HALF_2011, True),
]


def _periods(pack, source):
    if pack.name == "flights":
        return source["month"].map("2013-{:02d}".format)
    return source["datetime"].str[:7]


def _label(periods: tuple[str, ...]) -> str:
    return periods[0] if len(periods) == 1 else f"{periods[0]}..{periods[-1]}"


def write_case(case, folder: Path, rows: int) -> dict:
    """Build a case's two frames and write them as Parquet; their description."""
    import numpy as np
    from driftline.features import build_features
    from driftline.packs import load_pack

    name, current, reference, resample = case
    pack = load_pack(ROOT / "packs" / name)
    source = pack.load_source()
    features = build_features(pack, source)
    periods = _periods(pack, source)
    rng = np.random.default_rng(0)
    out = {"pack": name, "current": _label(current), "reference": _label(reference),
           "resampled": resample}
    for side, chosen in (("current", current), ("reference", reference)):
        frame = features[periods.isin(chosen).to_numpy()].reset_index(drop=True)
        if resample:
            frame = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
        frame.to_parquet(folder / f"{side}.parquet")
        out[f"{side}_rows"] = len(frame)
    return out



def worker(path: str, pack_name: str, folder: Path) -> dict:
    """Run one path on the case in ``folder``, in this process: its figures and costs."""
    import gc

    import memory  # bench/memory.py: this file runs as a script, bench/ is on sys.path
    import pandas as pd
    import pyarrow
    from driftline.drift import evidently_report, feature_drift, summarize_drift
    from driftline.packs import load_pack

    if path != "driftline":  # imported before the clock, as in a warm worker
        import evidently.presets  # noqa: F401
    pack = load_pack(ROOT / "packs" / pack_name)
    current = pd.read_parquet(folder / "current.parquet")
    reference = pd.read_parquet(folder / "reference.parquet")
    gc.collect()
    pyarrow.default_memory_pool().release_unused()  # what the read freed, kept by the pool
    reset = memory.reset_peak()
    frames_mb = memory.status_mb("VmRSS")
    started = time.perf_counter()
    if path == "evidently":
        figures = summarize_drift(evidently_report(pack, current, reference, THRESHOLD).dict())
    elif path == "driftline":
        figures = feature_drift(pack, current, reference, THRESHOLD)
    else:
        figures = feature_drift(pack, current, reference, THRESHOLD,
                                html_path=folder / "drift.html")
    seconds = time.perf_counter() - started
    peak = memory.peak_mb(reset)
    return {"path": path, "seconds": seconds, "peak_mb": peak, "frames_mb": frames_mb,
            "peak_is_the_calls": reset, "figures": figures}


def run_worker(path: str, pack: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", path, "--pack", pack,
                           "--folder", str(folder)], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(done.stdout.strip().splitlines()[-1])


COLUMNS = [("pack", "pack", "<7", ""), ("current", "current", "<8", ""),
           ("reference", "reference", "<19", ""), ("rows cur/ref", "rows", "<25", ""),
           ("evid. s", "evidently_s", ">7", ".2f"), ("MB", "evidently_mb", ">5", ".0f"),
           ("drift. s", "driftline_s", ">8", ".3f"), ("MB", "driftline_mb", ">5", ".0f"),
           ("x faster", "ratio_s", ">8", ".0f"), ("x less", "ratio_mb", ">6", ".1f"),
           ("frames MB", "frames_mb", ">9", ".0f"), ("call MB", "call_mb", ">7", ".0f"),
           ("+html s", "html_s", ">7", ".2f"), ("MB", "html_mb", ">5", ".0f"),
           ("same", "same", "<4", "")]


def measure(case, rows: int, html: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="driftline-bench-drift-") as tmp:
        folder = Path(tmp)
        row = write_case(case, folder, rows)
        runs = {path: run_worker(path, case[0], folder)
                for path in ("evidently", "driftline", *(("html",) if html else ()))}
    ev, dl = runs["evidently"], runs["driftline"]
    scores = max(abs(ev["figures"]["columns"][c] - dl["figures"]["columns"][c])
                 for c in ev["figures"]["columns"])
    same = (ev["figures"]["drifted"] == dl["figures"]["drifted"]
            and ev["figures"]["share"] == dl["figures"]["share"])
    row.update(
        rows=f"{row['current_rows']}/{row['reference_rows']}"
             + (" resampled" if row["resampled"] else ""),
        evidently_s=ev["seconds"], evidently_mb=ev["peak_mb"], driftline_s=dl["seconds"],
        driftline_mb=dl["peak_mb"], ratio_s=ev["seconds"] / dl["seconds"],
        ratio_mb=ev["peak_mb"] / dl["peak_mb"], frames_mb=dl["frames_mb"],
        call_mb=dl["peak_mb"] - dl["frames_mb"],
        html_s=runs["html"]["seconds"] if html else float("nan"),
        html_mb=runs["html"]["peak_mb"] if html else float("nan"),
        same="yes" if same else "NO", max_score_diff=scores, drifted=dl["figures"]["drifted"],
        peak_is_the_calls=dl["peak_is_the_calls"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows per side of the resampled cases")
    parser.add_argument("--packs", default="flights,bikes")
    parser.add_argument("--no-html", action="store_true", help="skip the +html path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pack", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.pack, args.folder)))
        return

    rows = []
    for case in CASES:
        if case[0] in args.packs.split(","):
            rows.append(measure(case, args.rows, not args.no_html))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(" ".join(f"{title:{width}}" for title, _, width, _ in COLUMNS))
    for row in rows:
        print(" ".join(f"{row[key]:{width}{spec}}" for _, key, width, spec in COLUMNS))
    if not all(row["peak_is_the_calls"] for row in rows):
        print("(the peak RSS could not be reset: MB is the process's whole peak)")


if __name__ == "__main__":
    main()
