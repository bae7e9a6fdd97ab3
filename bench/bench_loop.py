"""Time the demo loop stage by stage on real 2013 data, in a throwaway driftline home.

Stages run through the same core functions the Airflow operators call (the scheduler's own
overhead is what ``make demo`` reports). Prints one line per stage and a JSON summary.

    python bench/bench_loop.py [--days 90] [--repeats 3]
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
    parser.add_argument("--days", type=int, default=90, help="Q1 days to ingest and train on")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cheap stages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from driftline.evaluation import run_gate
    from driftline.ingest import ingest_day
    from driftline.monitoring import run_drift_report
    from driftline.registry import Registry
    from driftline.serving.bluegreen import BlueGreen
    from driftline.settings import ServingSettings, load_settings
    from driftline.sources import iter_days, replay
    from driftline.training import train
    from driftline.versioning import DataRepo

    home = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    settings = load_settings(home=home, config="")
    settings = replace(settings, serving=ServingSettings(router_port=28780, blue_port=28781,
                                                         green_port=28782))
    start = dt.date(2013, 1, 1)
    end = start + dt.timedelta(days=args.days - 1)
    figures: dict = {"home": str(home)}

    replay(settings.landing_dir, start, dt.date(2013, 4, 30))
    per_day, rows = [], 0
    for day in iter_days(start, end):
        version, seconds = timed(ingest_day, settings, day)
        per_day.append(seconds)
        rows += version.rows
    figures["ingest"] = {"days": len(per_day), "rows": rows,
                         "rows_per_s": round(rows / sum(per_day)),
                         "median_day_s": round(statistics.median(per_day), 3),
                         "last_10_days_median_s": round(statistics.median(per_day[-10:]), 3)}
    print(f"ingest   {rows} rows in {sum(per_day):.1f}s = {figures['ingest']['rows_per_s']} "
          f"rows/s (median {figures['ingest']['median_day_s']}s/day, "
          f"last 10 days {figures['ingest']['last_10_days_median_s']}s/day)")

    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    trains = []
    for i in range(args.repeats):
        result, seconds = timed(train, settings, head, start, end,
                                params={"learning_rate": 0.1 + i / 1000}, reason="bench")
        trains.append(seconds)
    figures["train"] = {"median_s": round(statistics.median(trains), 2),
                        "xgboost_fit_s": result["metrics"]["train_seconds"],
                        "train_rows": result["metrics"]["train_rows"],
                        "auc": round(result["metrics"]["auc"], 4)}
    print(f"train    median {figures['train']['median_s']}s end to end "
          f"(XGBoost fit {figures['train']['xgboost_fit_s']}s on "
          f"{figures['train']['train_rows']} rows, AUC {figures['train']['auc']})")

    registry = Registry(settings.registry_dir, settings.model_name)
    versions = registry.versions()
    gates = [timed(run_gate, versions[-1], versions[0], settings.gate,
                   home / "gate" / str(i))[1] for i in range(args.repeats)]
    figures["gate"] = {"median_s": round(statistics.median(gates), 2)}
    print(f"gate     median {figures['gate']['median_s']}s (two models on the holdout, "
          "quality + drift reports)")

    serving = BlueGreen(settings)
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

    ingest_april = [ingest_day(settings, d) for d in iter_days(dt.date(2013, 4, 1),
                                                               dt.date(2013, 4, 30))]
    monitors = [timed(run_drift_report, settings, dt.date(2013, 4, 1),
                      dt.date(2013, 4, 30))[1] for _ in range(args.repeats)]
    figures["monitor"] = {"median_s": round(statistics.median(monitors), 2),
                          "rows": sum(p.rows for p in ingest_april)}
    print(f"monitor  median {figures['monitor']['median_s']}s (April, "
          f"{figures['monitor']['rows']} rows vs the champion's reference)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
