"""The live model month by month: each pack's v1 (trained on its ``[source]`` history, as
``make demo`` trains it) measured on every later month's outcomes, with the month's drift
share and what the pack's retrain policy decides when nothing retrains.

    python bench/bench_live_quality.py [--packs flights,bikes] [--months 9]

Runs on the embedded defaults and the packs' own settings in a temporary home: the source
rows of each interval are versioned in a real DVC repo (the partition writer ingest uses),
v1 is trained through the training entrypoint's function, then per month the drift report
and the live-quality report are written by the monitor's functions and the policy decides
as its sensor would at that month's end; a month it retrains on is claimed and v1 stays
live (as when the gate refuses the retrain), so the table shows what the policy does after a
refused retrain. Prints one row per month and the elapsed time per pack.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def month_end(first: dt.date) -> dt.date:
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def run_pack(name: str, months: int, home: Path) -> None:
    from driftline.monitoring import run_drift_report
    from driftline.outcomes import measure_live_quality
    from driftline.packs.timeline import iter_intervals
    from driftline.registry import Registry
    from driftline.retraining import RETRAIN, claim_interval, decisions
    from driftline.settings import load_settings
    from driftline.training import train
    from driftline.versioning import DataRepo
    from driftline.workspace import open_workspace

    began = time.monotonic()
    ws = open_workspace(name, load_settings(home=home / name, packs_dir=ROOT / "packs"))
    pack = ws.pack
    source = pack.load_source()
    first, last = pack.spec.source.history
    firsts = [last + dt.timedelta(days=1)]
    for _ in range(months - 1):
        firsts.append(month_end(firsts[-1]) + dt.timedelta(days=1))
    dates = pack.local_dates(source[pack.time_column])
    repo = DataRepo.of(ws)
    for start in iter_intervals(first, month_end(firsts[-1]), pack.interval):
        stop = pack.interval_end(start)
        repo.write_partition(start, source[(dates >= start) & (dates < stop)])
    v1 = train(ws, repo.head(), first, last, reason="bench: v1 as make demo trains it")
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", v1["version"], "bench")
    print(f"\n{name}: v1 {v1['version']} on {first}..{last}, holdout {pack.metric} "
          f"{v1['metrics'][pack.metric]:.4f}; policy {ws.retrain.on}, consecutive "
          f"{ws.retrain.consecutive}, cooldown {ws.retrain.cooldown_days} d; drift threshold "
          f"{ws.monitor.drift_share_threshold}, quality limit "
          f"{ws.monitor.max_quality_drop.get(pack.metric)}")
    print(f"  {'month':<8} {'rows':>7} {pack.metric:>8} {'drop':>8} {'pred drift':>11} "
          f"{'drift share':>11}  policy at the month's end (v1 kept live)")
    for start in firsts:
        end = month_end(start)
        drift = run_drift_report(ws, start, end)
        quality = measure_live_quality(ws, start, end)
        decision = next(d for d in decisions(ws) if d.start == start.isoformat())
        if decision.action == RETRAIN:  # as the sensor would; the gate refuses, v1 stays
            claim_interval(ws, decision, "bench")
        measured = quality["status"] == "measured"
        figure = (f"{quality['value']:8.4f} {quality['drop']:+8.4f}" if measured
                  else f"{'pending':>17}")
        prediction = (f"{quality['prediction_drift']['stattest'][:4]} "
                      f"{quality['prediction_drift']['score']:.3f}") if measured else ""
        rules = ", ".join(o.rule for o in decision.crossing)
        print(f"  {start:%Y-%m} {quality.get('rows', 0):>7} {figure} {prediction:>11} "
              f"{drift['share']:>11.3f}  {decision.action}{': ' + rules if rules else ''}")
    print(f"  {name}: {time.monotonic() - began:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="flights,bikes")
    parser.add_argument("--months", type=int, default=None,
                        help="months after the history (default: the pack's replay_months)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    from driftline.settings import load_settings
    from driftline.workspace import open_workspace

    with tempfile.TemporaryDirectory(prefix="driftline-bench-quality-") as tmp:
        for name in [p.strip() for p in args.packs.split(",") if p.strip()]:
            months = args.months or open_workspace(
                name, load_settings(home=Path(tmp) / name, packs_dir=ROOT / "packs")
            ).pack.spec.source.replay_months
            run_pack(name, months, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
