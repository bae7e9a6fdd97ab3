"""What the driftline pages read from Airflow itself: component health, the watchdog's
restarts, backfill runs stuck behind a paused DAG, and per pack the DAG runs behind each
model (lineage) and the time each stage took."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

# The stages of a pack's loop, as (DAG suffix, task ids timed as that stage).
STAGES = {
    "ingest": ("ingest", ("ingest_partition",)),
    "train": ("train", ("plan", "train")),
    "gate": ("train", ("gate",)),
    "deploy": ("train", ("deploy",)),
    "monitor": ("monitor", ("drift_report",)),
}
DAG_SUFFIXES = ("ingest", "train", "monitor", "retrain_on_drift", "rollback")


def component_state() -> dict:
    """Airflow's components as its health check sees them (a dead scheduler turns
    ``unhealthy`` once its heartbeat is stale), the watchdog's restarts, and what needs a
    person: backfill runs that cannot start because their DAG is paused."""
    from airflow.api.common.airflow_health import get_airflow_health
    from airflow.configuration import AIRFLOW_HOME
    from airflow.models import DagModel, DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    components = {name: (report or {}).get("status") or "not running"
                  for name, report in get_airflow_health().items()}
    with create_session() as session:
        waiting = dict(session.execute(
            select(DagRun.dag_id, func.count()).join(DagModel, DagModel.dag_id == DagRun.dag_id)
            .where(DagModel.is_paused.is_(True), DagRun.state == "queued",
                   DagRun.run_type == "backfill").group_by(DagRun.dag_id)).all())
    watchdog = Path(AIRFLOW_HOME) / "watchdog.json"
    restarts = ({name: entry.get("restarts", 0) for name, entry in
                 json.loads(watchdog.read_text()).items()} if watchdog.exists() else {})
    attention = [f"{name} is {state}" for name, state in components.items()
                 if state != "healthy"]
    attention += [f"{dag_id}: {count} backfill runs wait because the DAG is paused "
                  f"(unpause it to run them)" for dag_id, count in sorted(waiting.items())]
    return {"components": components, "restarts": restarts,
            "paused_backfill_runs": waiting, "attention": attention}


def pack_runs(pack: str, limit: int = 30) -> dict:
    """A pack's recent DAG runs with each task's state and duration, the median time per
    stage, and the runs that ingested each data version and trained each model version.

    :param limit: the most recent runs read per DAG.
    :return: ``{"runs": [...], "stages": {stage: median s}, "by_data_version": {...},
        "by_model": {...}}``: the ingest run per data version, the train run per model
        artifact (its sha256: version numbers repeat across registries, artifacts do not).
    """
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_ids = [f"{pack}_{suffix}" for suffix in DAG_SUFFIXES]
    with create_session() as session:
        runs = []
        for dag_id in dag_ids:
            runs += session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                    .order_by(DagRun.id.desc()).limit(limit)).all()
        keys = {(r.dag_id, r.run_id) for r in runs}
        tasks = defaultdict(dict)
        for ti in session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id.in_(dag_ids),
                TaskInstance.run_id.in_({run_id for _, run_id in keys}))):
            if (ti.dag_id, ti.run_id) in keys:
                tasks[(ti.dag_id, ti.run_id)][ti.task_id] = {
                    "state": ti.state, "duration": ti.duration, "try_number": ti.try_number}
        produced = _produced_versions(session, pack)
        listed = [_run_entry(run, tasks[(run.dag_id, run.run_id)]) for run in runs]
    listed.sort(key=lambda r: r["start_date"] or "", reverse=True)
    return {"runs": listed, "stages": stage_medians(listed, pack), **produced}


def _run_entry(run, tasks: dict) -> dict:
    def iso(value):
        return value.isoformat(timespec="seconds") if value else None

    return {"dag_id": run.dag_id, "run_id": run.run_id, "state": run.state,
            "run_type": run.run_type, "logical_date": iso(run.logical_date),
            "start_date": iso(run.start_date), "end_date": iso(run.end_date),
            "conf": run.conf or {}, "tasks": tasks}


def stage_medians(runs: list[dict], pack: str) -> dict:
    """Median seconds per stage over the runs that did it (successful tasks only)."""
    medians = {}
    for stage, (suffix, task_ids) in STAGES.items():
        seconds = []
        for run in runs:
            if run["dag_id"] != f"{pack}_{suffix}":
                continue
            done = [run["tasks"][t]["duration"] for t in task_ids if t in run["tasks"]
                    and run["tasks"][t]["state"] == "success" and run["tasks"][t]["duration"]]
            if len(done) == len(task_ids):
                seconds.append(sum(done))
        medians[stage] = round(statistics.median(seconds), 1) if seconds else None
    return medians


def _produced_versions(session, pack: str) -> dict:
    """Which ingest run wrote each data version and which train run made each model version
    (the tasks' own return values in XCom; the first run wins when a rerun reused it)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    found: dict[str, dict] = {"by_data_version": {}, "by_model": {}}
    for dag_suffix, task_id, field, into in (
            ("ingest", "ingest_partition", "data_version", "by_data_version"),
            ("train", "train", "sha256", "by_model")):
        rows = session.execute(
            select(XComModel.run_id, XComModel.value, XComModel.timestamp)
            .where(XComModel.dag_id == f"{pack}_{dag_suffix}", XComModel.task_id == task_id,
                   XComModel.key == "return_value").order_by(XComModel.timestamp)).all()
        for run_id, value, _ in rows:
            value = XComModel.deserialize_value(_Row(value))
            if isinstance(value, dict) and value.get(field):
                found[into].setdefault(value[field], {"dag_id": f"{pack}_{dag_suffix}",
                                                      "run_id": run_id,
                                                      "task_id": task_id})
    return found


class _Row:
    """The shape ``XComModel.deserialize_value`` reads: an object with ``.value``."""

    def __init__(self, value):
        self.value = value
