"""Time the demo loop stage by stage on a pack's real data, in a throwaway driftline home.

Stages run through the same core functions the Airflow operators call (the scheduler's own
overhead is what ``make demo`` reports). Prints one line per stage and a JSON summary.

    python bench/bench_loop.py [--pack flights] [--repeats 3]

The pack's ``[source] history`` is ingested and trained on; the month after it is monitored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default="flights", help="a pack with a [source] history")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cheap stages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from driftline.evaluation import run_gate
    from driftline.ingest import ingest_interval
    from driftline.landing import replay
    from driftline.monitoring import run_drift_report
    from driftline.packs.timeline import interval_end, iter_intervals
    from driftline.registry import Registry
    from driftline.serving.bluegreen import BlueGreen
    from driftline.serving.router import Router
    from driftline.settings import ServingSettings, load_settings
    from driftline.training import train
    from driftline.versioning import DataRepo
    from driftline.workspace import open_workspace

    home = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    settings = replace(load_settings(home=home, config=""),
                       serving=ServingSettings(router_port=28780))
    ws = open_workspace(args.pack, settings)
    pack = ws.pack
    start, end = pack.spec.source.history
    later = end + dt.timedelta(days=1)
    later_end = interval_end(later.replace(day=1), "monthly") - dt.timedelta(days=1)
    figures: dict = {"home": str(home), "pack": pack.name}

    source = pack.load_source()
    replay(ws, start, later_end, source=source)
    per_interval, rows = [], 0
    for first in iter_intervals(start, end, pack.interval):
        version, seconds = timed(ingest_interval, ws, first)
        per_interval.append(seconds)
        rows += version.rows
    figures["ingest"] = {"intervals": len(per_interval), "rows": rows,
                         "rows_per_s": round(rows / sum(per_interval)),
                         "median_interval_s": round(statistics.median(per_interval), 3),
                         "last_10_median_s": round(statistics.median(per_interval[-10:]), 3)}
    print(f"ingest   {rows} rows in {sum(per_interval):.1f}s = "
          f"{figures['ingest']['rows_per_s']} rows/s (median "
          f"{figures['ingest']['median_interval_s']}s per {pack.interval} file, last 10 "
          f"{figures['ingest']['last_10_median_s']}s)")

    head = DataRepo.of(ws).head()
    trains = []
    for i in range(args.repeats):
        result, seconds = timed(train, ws, head, start, end,
                                params={"learning_rate": 0.1 + i / 1000}, reason="bench")
        trains.append(seconds)
    metric = pack.metric
    figures["train"] = {"median_s": round(statistics.median(trains), 2),
                        "xgboost_fit_s": result["metrics"]["train_seconds"],
                        "train_rows": result["metrics"]["train_rows"],
                        metric: round(result["metrics"][metric], 4)}
    print(f"train    median {figures['train']['median_s']}s end to end "
          f"(XGBoost fit {figures['train']['xgboost_fit_s']}s on "
          f"{figures['train']['train_rows']} rows, {metric} {figures['train'][metric]})")

    registry = Registry(ws.registry_dir, ws.model_name)
    versions = registry.versions()
    gates = [timed(run_gate, pack, versions[-1], versions[0], ws.gate,
                   home / "gate" / str(i))[1] for i in range(args.repeats)]
    figures["gate"] = {"median_s": round(statistics.median(gates), 2)}
    print(f"gate     median {figures['gate']['median_s']}s (two models on the holdout, "
          "quality + drift reports)")

    serving = BlueGreen(ws)
    try:
        deploys = []
        for version in versions[:2] + versions[:1]:
            deploys.append(timed(serving.deploy, version, "bench")[1])
            registry.set_alias("champion", version.version, "bench")
        figures["deploy"] = {"median_s": round(statistics.median(deploys), 2),
                             "first_s": round(deploys[0], 2)}
        print(f"deploy   median {figures['deploy']['median_s']}s (start slot, ready, smoke, "
              f"switch, verify; first incl. nginx start {figures['deploy']['first_s']}s)")
    finally:
        serving.stop_all()
        Router(settings).stop()

    ingested = [ingest_interval(ws, d) for d in iter_intervals(later, later_end, pack.interval)]
    monitors = [timed(run_drift_report, ws, later, later_end)[1] for _ in range(args.repeats)]
    figures["monitor"] = {"median_s": round(statistics.median(monitors), 2),
                          "rows": sum(p.rows for p in ingested)}
    print(f"monitor  median {figures['monitor']['median_s']}s ({later:%B %Y}, "
          f"{figures['monitor']['rows']} rows vs the champion's reference)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
