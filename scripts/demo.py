"""The main job: driftline's whole loop on every shipped dataset pack, through a real scheduler.

1. start Airflow (scheduler, dag-processor, triggerer, api-server; SQLite, LocalExecutor)
2. per pack (``$DRIFTLINE_DEMO_PACKS``, default ``flights,bikes``), from its ``[source]``:
   replay the history span into the landing zone and backfill ``<pack>_ingest`` over it;
   trigger ``<pack>_train`` as a person would from the UI: train, gate, deploy v1
3. month by month after that: replay and backfill ingest, send traffic to the pack's model
   through the router, backfill ``<pack>_monitor``; when a month's drift crosses the threshold
   the deferred sensor in ``<pack>_retrain_on_drift`` triggers ``<pack>_train``, whose gate
   deploys v2 or refuses it; after each month's monitor run, the month's live quality (the
   ``live_quality`` task's summary), and any earlier month's once its pending outcomes landed
4. after the drift retrain, per pack: trigger ``<pack>_train`` with a deliberately weak
   candidate (2 boosting rounds), which the gate must refuse as significantly worse while
   the live model stays; then roll back by hand (``<pack>_rollback``) to the previous slot
5. print each pack's summary; both models stay live behind the one router, each with its own
   endpoint; Airflow and serving stay up (``make stop`` stops them)

Exits 0 only when every pack had its drift retrain and the refusal and rollback behaved as
expected.

Usage: ``python scripts/demo.py`` (``--up`` only starts the stack, ``--stop`` stops it).
``DRIFTLINE_TIER=postgres-celery`` runs it on PostgreSQL with CeleryExecutor (two workers,
Redis as the broker) instead of SQLite with LocalExecutor (``scripts/airflow_stack.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import (  # noqa: E402
    AirflowApi,
    AirflowStack,
    airflow_env,
    describe,
)

log = logging.getLogger("demo")
STAGES = ("ingest", "train", "monitor", "retrain_on_drift", "rollback")
TRAFFIC_ROWS_PER_MONTH = 3000
DEFAULT_PACKS = "flights,bikes"
WEAK_CANDIDATE = {"hyperparameters": {"num_boost_round": 2},
                  "reason": "demo: a deliberately weak candidate (2 boosting rounds)"}
"""The conf of the manual train run the gate must refuse."""
ROLLBACK = {"reason": "demo: manual rollback"}
"""The conf of the manual rollback run."""


def month_end(first: dt.date) -> dt.date:
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)


def interval_label(start: str, end: str) -> str:
    """``April 2013`` for a whole month, else ``2013-07-01..2013-07-03``."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if first.day == 1 and last == month_end(first):
        return f"{first:%B %Y}"
    return f"{start}..{end}"


def quality_line(pack: str, summary: dict) -> str:
    """One interval's live quality (an ``outcomes`` summary), measured or pending."""
    head = (f"{pack} live {summary['metric']} "
            f"{interval_label(summary['start'], summary['end'])}")
    if summary["status"] != "measured":
        return f"{head}: pending: {summary['reason']}"
    drift = summary["prediction_drift"]
    limit = "none" if summary["limit"] is None else summary["limit"]
    crossed = ", CROSSED" if summary["crossed"] else ""
    drifted = " (drifted)" if drift["drifted"] else ""
    return (f"{head}: {summary['value']:.3f} vs holdout {summary['baseline']:.3f} "
            f"(drop {summary['drop']:.3f}, limit {limit}{crossed}) on {summary['rows']:,} rows "
            f"({summary['source']}); prediction drift {drift['stattest']} {drift['score']:.2f}"
            f"{drifted}")


def verdict_lines(verdict: dict) -> list[str]:
    """A gate verdict (``verdict.json``): the outcome, each failed check and by how much, and
    the candidate - champion interval with its p-value and rows."""
    failed = [c for c in verdict["checks"] if not c["passed"]]
    outcome = (f"refused {verdict['candidate']} ({len(failed)} of {len(verdict['checks'])} "
               f"checks failed; champion {verdict['champion'] or 'none'} stays live)"
               if failed else f"passed {verdict['candidate']}")
    lines = [f"gate {outcome}"]
    for c in failed:
        lines.append(f"FAILED {c['name']}: " + (
            c["detail"] if c["margin"] is None else
            f"{c['value']:.4f}, limit {c['op']} {c['threshold']}, off by {abs(c['margin']):.4f}"))
    for c in verdict["checks"]:
        if c["statistics"]:
            d = c["statistics"]
            lines.append(f"candidate - champion {d['metric']} {d['difference']:+.4f}, "
                         f"{d['confidence']:.0%} CI [{d['low']:+.4f}, {d['high']:+.4f}], "
                         f"p = {d['p_value']:.4f}, {d['rows']:,} holdout rows ({d['method']})")
    return lines


def significantly_worse(verdict: dict) -> bool:
    """Whether the gate refused on its interval (a failed statistical check)."""
    return any(c["statistics"] and not c["passed"] for c in verdict["checks"])


def _progress(label: str):
    last = {"n": -1}

    def show(done: int, total: int) -> None:
        if done != last["n"]:
            last["n"] = done
            print(f"   {label}: {done}/{total} runs finished", flush=True)

    return show


class PackDemo:
    """The demo's loop for one pack.

    :param api: the Airflow REST client.
    :param ws: the pack's workspace.
    :param source: the pack's whole history (its ``[source]`` loader's rows).
    """

    def __init__(self, api: AirflowApi, ws, source):
        self.api, self.ws, self.source = api, ws, source
        self.pack = ws.pack
        self.name = ws.name
        self.timings: dict = {}
        self.pending_quality: set[str] = set()
        """Report ids of the months whose live quality was pending when last shown."""

    def dag(self, stage: str) -> str:
        return f"{self.name}_{stage}"

    def endpoint(self, path: str) -> str:
        """The URL of ``path`` (``/predict``, ``/version``) on the pack's router endpoint."""
        from driftline.serving.paths import router_url

        return f"{router_url(self.ws.settings, self.name)}{path}"

    def live_version(self) -> dict:
        """What the router's ``/version`` answers for the pack (``model_version``, ``slot``)."""
        import httpx

        return httpx.get(self.endpoint("/version"), timeout=10).raise_for_status().json()

    def ingest(self, start: dt.date, end: dt.date) -> dict:
        """Replay ``[start, end]`` into the landing zone and backfill ingest over it."""
        from driftline.landing import replay
        from driftline.packs.timeline import iter_intervals

        replay(self.ws, start, end, source=self.source)
        intervals = {d.isoformat() for d in iter_intervals(start, end, self.pack.interval)}
        began = time.monotonic()
        self.api.backfill(self.dag("ingest"), start.isoformat(), end.isoformat(),
                          max_active_runs=4)
        runs = self.api.wait_runs(self.dag("ingest"), intervals, timeout=1800,
                                  progress=_progress(f"{self.name} ingest {start}..{end}"))
        seconds = time.monotonic() - began
        failed = sorted(r["logical_date"][:10] for r in runs if r["state"] != "success")
        print(f"   {self.name} ingest {start}..{end}: {len(runs) - len(failed)}/{len(runs)} "
              f"intervals ok in {seconds:.0f}s{'; failed: ' + ', '.join(failed) if failed else ''}")
        return {"intervals": len(runs), "failed": failed, "seconds": seconds}

    def send_traffic(self, start: dt.date, end: dt.date, rows: int) -> int:
        """Send the month's rows to the pack's live model through the router, 100 a request."""
        import httpx
        import numpy as np
        from driftline.scoring import request_rows

        dates = self.pack.local_dates(self.source[self.pack.time_column])
        month = self.source[(dates >= np.datetime64(start)) & (dates <= np.datetime64(end))]
        records = request_rows(self.pack, month.sample(min(rows, len(month)), random_state=0))
        url = self.endpoint("/predict")
        served = 0
        with httpx.Client(timeout=30) as client:
            for i in range(0, len(records), 100):
                response = client.post(url, json={"rows": records[i:i + 100]})
                response.raise_for_status()
                served += len(response.json()["predictions"])
        return served

    def task_states(self, stage: str, run: dict) -> dict[str, str]:
        return {t["task_id"]: t["state"]
                for t in self.api.task_instances(self.dag(stage), run["dag_run_id"])}

    def describe_train_run(self, run: dict) -> str:
        tasks = ", ".join(f"{k}={v}" for k, v in self.task_states("train", run).items())
        return f"{run['dag_run_id']}: {run['state']} ({tasks})"

    def show_quality(self, start: dt.date, end: dt.date) -> None:
        """Print the interval's live quality as the monitor's ``live_quality`` task wrote it,
        then each earlier interval measured since it was shown as pending."""
        from driftline.outcomes import PENDING, list_quality_reports, report_id_for

        reports = {r["report_id"]: r for r in list_quality_reports(self.ws)}
        report_id = report_id_for(start, end)
        summary = reports.get(report_id)
        if summary is None:
            print(f"   {self.name} live quality {start:%B %Y}: no summary was written "
                  "(see the monitor's live_quality task log)")
        else:
            print(f"   {quality_line(self.name, summary)}")
        for earlier in sorted(self.pending_quality - {report_id}):
            if reports[earlier]["status"] != PENDING:
                print(f"   measured later: {quality_line(self.name, reports[earlier])}")
                self.pending_quality.discard(earlier)
        if summary and summary["status"] == PENDING:
            self.pending_quality.add(report_id)

    def wait_drift_train_run(self, report_id: str, timeout: float = 300) -> dict | None:
        """Wait for the train run the retrain policy sensor started for ``report_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.api.runs(self.dag("train")):
                if (run.get("conf") or {}).get("drift_report_id") == report_id:
                    return self.api.wait_run(self.dag("train"), run["dag_run_id"], timeout=1200)
            time.sleep(3)
        return None

    def run(self) -> dict | None:
        """The whole loop; returns the drift-triggered train run (None if none happened)."""
        from driftline.monitoring import drift_dir, report_id_for

        source_spec = self.pack.spec.source
        first, last = source_spec.history
        for stage in STAGES:
            self.api.wait_for_dag(self.dag(stage))
        print(f"== {self.name} 1. ingest {first}..{last} (backfill, 4 runs at a time) ==")
        self.timings["ingest_history"] = self.ingest(first, last)

        print(f"== {self.name} 2. train, gate and deploy v1 (manual trigger, as from the UI) ==")
        self.api.set_paused(self.dag("train"), False)
        began = time.monotonic()
        run_id = self.api.trigger(self.dag("train"), {
            "window_start": first.isoformat(), "window_end": last.isoformat(),
            "reason": f"initial model on {first}..{last}"})
        run = self.api.wait_run(self.dag("train"), run_id, timeout=1200)
        self.timings["train_v1_s"] = time.monotonic() - began
        print(f"   {self.describe_train_run(run)}")
        if run["state"] != "success":
            print(f"   {self.name} v1 did not deploy; see the task logs in the UI")
            return None

        print(f"== {self.name} 3. later months: ingest, serve traffic, monitor drift ==")
        self.api.set_paused(self.dag("retrain_on_drift"), False)
        self.api.set_paused(self.dag("monitor"), False)
        month = last + dt.timedelta(days=1)
        for _ in range(source_spec.replay_months):
            end = month_end(month)
            self.ingest(month, end)
            served = self.send_traffic(month, end, TRAFFIC_ROWS_PER_MONTH)
            print(f"   served {served} {self.name} predictions for {month:%B %Y} through the "
                  "router")
            self.api.backfill(self.dag("monitor"), month.isoformat(), month.isoformat(),
                              max_active_runs=1)
            self.api.wait_runs(self.dag("monitor"), {month.isoformat()}, timeout=600)
            self.show_quality(month, end)
            summary_path = drift_dir(self.ws) / report_id_for(month, end) / "summary.json"
            summary = json.loads(summary_path.read_text())
            print(f"   {self.name} drift {month:%B %Y}: share {summary['share']:.3f} "
                  f"(threshold {summary['threshold']}) "
                  f"{'CROSSED' if summary['crossed'] else 'below'}")
            if summary["crossed"]:
                print("   waiting for the retrain policy sensor to trigger retraining ...")
                outcome = self.wait_drift_train_run(summary["report_id"])
                if outcome:
                    print(f"   drift-triggered {self.describe_train_run(outcome)}")
                return outcome
            month = end + dt.timedelta(days=1)
        return None

    def refuse_weak_candidate(self) -> bool:
        """Trigger ``<pack>_train`` with :data:`WEAK_CANDIDATE` as from the UI and show the
        gate's verdict; True if the gate refused it as significantly worse and the live model
        stayed."""
        from driftline.overview import gate_verdicts

        print(f"== {self.name} 4. a deliberately weak candidate (manual trigger, 2 boosting "
              "rounds): the gate must refuse it ==")
        before = self.live_version()
        run_id = self.api.trigger(self.dag("train"), WEAK_CANDIDATE)
        run = self.api.wait_run(self.dag("train"), run_id, timeout=1200)
        after = self.live_version()
        print(f"   {self.describe_train_run(run)}")
        states = self.task_states("train", run)
        candidate = ((self.api.xcom(self.dag("train"), run_id, "train") or {}).get("version")
                     if states.get("train") == "success" else None)
        verdicts = [v for v in gate_verdicts(self.ws) if v["candidate"] == candidate]
        for line in verdict_lines(verdicts[-1]) if verdicts else ["no gate verdict was kept"]:
            print(f"   {line}")
        print(f"   live before: {before['model_version']} (slot {before['slot']}); after: "
              f"{after['model_version']} (slot {after['slot']})")
        untouched = all(after[k] == before[k] for k in ("model_version", "slot"))
        expected = (run["state"] == "failed" and states.get("gate") == "failed"
                    and bool(verdicts) and significantly_worse(verdicts[-1]) and untouched)
        if expected:
            print(f"   {run_id} failed at the gate, the expected outcome (refused as "
                  "significantly worse); the live model is untouched")
        else:
            print(f"   UNEXPECTED: the gate was to refuse {candidate} as significantly worse "
                  "and leave the live model as it was")
        return expected

    def roll_back(self) -> bool:
        """Trigger ``<pack>_rollback`` as from the UI; True if the live model became the
        previous slot's."""
        from driftline.overview import serving_state
        from driftline.serving.paths import other_slot

        print(f"== {self.name} 5. manual rollback to the previous slot's model ==")
        state = serving_state(self.ws)
        previous = (state["slots"].get(other_slot(state["live"])) or {}).get("version")
        before = self.live_version()
        self.api.set_paused(self.dag("rollback"), False)
        run = self.api.wait_run(self.dag("rollback"),
                                self.api.trigger(self.dag("rollback"), ROLLBACK), timeout=600)
        after = self.live_version()
        print(f"   {run['dag_run_id']}: {run['state']}; live before: {before['model_version']} "
              f"(slot {before['slot']}); after: {after['model_version']} (slot {after['slot']})")
        expected = (run["state"] == "success" and after["model_version"] == previous
                    and after["slot"] != before["slot"])
        if not expected:
            print(f"   UNEXPECTED: the rollback was to make {previous or 'the previous slot'}"
                  " live")
        return expected

    def show_gate_and_rollback(self) -> bool:
        """The refusal, then the rollback; True if both behaved as expected."""
        began = time.monotonic()
        refused = self.refuse_weak_candidate()
        rolled_back = self.roll_back()
        self.timings["refusal_rollback_s"] = time.monotonic() - began
        return refused and rolled_back


def run_demo(stack: AirflowStack, pack_names: list[str]) -> int:
    from driftline.overview import collect, render_text
    from driftline.settings import load_settings
    from driftline.workspace import open_workspace

    settings = load_settings()
    api = stack.api()
    outcomes, demos, unexpected = {}, {}, []
    for name in pack_names:
        ws = open_workspace(name, settings)
        demos[name] = PackDemo(api, ws, ws.pack.load_source())
        outcomes[name] = demos[name].run()
        if outcomes[name] is not None and not demos[name].show_gate_and_rollback():
            unexpected.append(name)

    print()
    for name, demo in demos.items():
        print(f"================ driftline summary: {name} ================")
        print(render_text(collect(demo.ws)))
        history = demo.timings.get("ingest_history")
        if history:
            extra = demo.timings.get("refusal_rollback_s")
            print(f"== timings == ingest history {history['seconds']:.0f}s "
                  f"({history['intervals']} intervals), train+gate+deploy v1 "
                  f"{demo.timings.get('train_v1_s', 0):.0f}s"
                  + (f", refusal+rollback {extra:.0f}s" if extra is not None else ""))
    print_access(stack, settings, pack_names)
    missing = [name for name, outcome in outcomes.items() if outcome is None]
    if missing:
        print(f"no drift-triggered retraining happened for: {', '.join(missing)}")
    if unexpected:
        print(f"the gate refusal or the rollback did not behave as expected for: "
              f"{', '.join(unexpected)}")
    return 1 if missing or unexpected else 0


def print_access(stack: AirflowStack, settings, pack_names: list[str]) -> None:
    from driftline.serving.paths import router_url

    print(f"== Airflow UI == {stack.url}  (login admin / admin); driftline page: "
          f"{stack.url}/driftline/")
    for name in pack_names:
        print(f"== {name} endpoint == {router_url(settings, name)}/predict "
              "(/version, /health)")
    print("stop everything with: make stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--up", action="store_true", help="only start Airflow and serving")
    parser.add_argument("--stop", action="store_true", help="stop Airflow and serving")
    parser.add_argument("--packs", default=os.environ.get("DRIFTLINE_DEMO_PACKS", DEFAULT_PACKS),
                        help=f"comma-separated packs to run (default {DEFAULT_PACKS})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, also in a log

    airflow_home = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow"))
    driftline_home = Path(os.environ.get("DRIFTLINE_HOME", ROOT / ".driftline"))
    os.environ["DRIFTLINE_HOME"] = str(driftline_home)
    os.environ.setdefault("DRIFTLINE_PACKS", str(ROOT / "packs"))
    stack = AirflowStack(airflow_env(ROOT, airflow_home, driftline_home))

    from driftline.serving.bluegreen import stop_serving
    from driftline.settings import load_settings

    if args.stop:
        stack.stop()
        stop_serving(load_settings())
        print("stopped Airflow and the serving stack")
        return 0
    pack_names = [p.strip() for p in args.packs.split(",") if p.strip()]
    print(f"== starting Airflow in {airflow_home} (tier {stack.tier}; state in "
          f"{driftline_home}; packs {', '.join(pack_names)}) ==")
    stack.init()
    restarted = stack.start()
    if restarted and len(restarted) < len(stack.components):
        print(f"was down, started again: {', '.join(restarted)}")
    states = stack.wait_healthy()
    stack.start_watchdog()
    print(f"Airflow: {describe(states)}; a watchdog restarts a component that dies "
          f"(log: {stack.log_dir / 'watchdog.log'})")
    settings = load_settings()
    if settings.serving.backend == "local":
        from driftline.serving.supervisor import start_detached, supervise_once

        for event in supervise_once(settings):  # after a reboot: the recorded live versions
            print(f"restored: {event.get('pack')}: {event['action']} {event.get('reason', '')}")
        print(f"serving supervisor running (pid {start_detached(settings)}): dead slot "
              "servers and nginx are restarted")
    if args.up:
        from driftline.overview import collect_all

        view = collect_all(load_settings())
        for name, pack in view["packs"].items():
            print(f"{name}: serving {pack['serving'].get('live') or 'nothing deployed yet'}")
        for name, error in view["broken"].items():
            print(f"{name}: does not load: {error}")
        print_access(stack, load_settings(), list(view["packs"]))
        return 0
    return run_demo(stack, pack_names)


if __name__ == "__main__":
    sys.exit(main())
