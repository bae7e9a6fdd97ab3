"""Render every dataset pack's DAGs: one call in one DAG file serves every pack.

Each pack gets five DAGs, their ids prefixed by the pack's name (``<pack>_ingest``,
``<pack>_train``, ``<pack>_monitor``, ``<pack>_retrain_on_drift``, ``<pack>_rollback``),
with its own Assets, registry namespace, reports, quarantine, partitions and serving slots.
The packs directory comes from configuration or the environment (``$DRIFTLINE_PACKS``), never
from an Airflow Variable at parse time. A pack whose spec is broken shows as an import error
of the DAG file that names the pack, the file, the field and what was expected; the other
packs' DAGs still load.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param
from driftline.packs import Pack, PackError
from driftline.planning import TRAIN_OPTIONS
from driftline.settings import Settings, load_settings
from driftline.workspace import open_workspaces

from driftline_provider.assets import data_asset
from driftline_provider.notifications.driftline import DriftlineNotifier
from driftline_provider.operators.deploy import BlueGreenDeployOperator, RollbackOperator
from driftline_provider.operators.gate import ModelGateOperator
from driftline_provider.operators.ingest import IngestPartitionOperator
from driftline_provider.operators.monitor import DriftReportOperator
from driftline_provider.operators.quality import LiveQualityOperator
from driftline_provider.operators.training import PlanTrainingOperator, training_operator
from driftline_provider.sensors.landing import LandingFileSensor
from driftline_provider.sensors.retrain import RetrainPolicySensor

START = datetime(2000, 1, 1)
SCHEDULES = {"daily": "@daily", "monthly": "@monthly"}


def _defaults(retries: int = 1) -> dict:
    return {"owner": "driftline", "retries": retries, "retry_delay": timedelta(seconds=30)}


def _doc(pack: Pack, what: str) -> str:
    return f"**{pack.name}** ({pack.task}): {pack.spec.description}\n\n{what}"


def _alerts(pack: Pack, event: str) -> dict:
    """The callback that sends ``pack``'s alert for ``event`` (``[alerts]`` decides at run
    time whether and where): on success for a drift or quality crossing, on failure for the
    rest."""
    when = "on_success_callback" if event in ("drift", "quality") else "on_failure_callback"
    return {when: DriftlineNotifier(event=event, pack=pack.name)}


def ingest_dag(pack: Pack) -> DAG:
    """Per data interval: wait for the landing file, validate it, version the partition."""
    with DAG(f"{pack.name}_ingest", schedule=SCHEDULES[pack.interval], start_date=START,
             catchup=False, max_active_runs=4, tags=["driftline", f"pack:{pack.name}", "ingest"],
             default_args=_defaults(retries=2), doc_md=_doc(pack, (
                 f"One data interval ({pack.interval}) = one landing file "
                 f"`{pack.spec.landing.pattern}` → validated, DVC-versioned partition; "
                 f"publishes the `driftline_{pack.name}_data` Asset. Backfill history with "
                 f"`airflow backfill create --dag-id {pack.name}_ingest ...`."))) as dag:
        wait = LandingFileSensor(task_id="wait_for_landing_file", pack=pack.name,
                                 poke_interval=60, timeout=12 * 3600)
        wait >> IngestPartitionOperator(task_id="ingest_partition", pack=pack.name,
                                        **_alerts(pack, "quarantine"))
    return dag


def train_dag(pack: Pack) -> DAG:
    """Train → gate → blue-green deploy; on new data, by hand with Params, or on drift."""
    params = {name: Param(spec["default"], **{k: v for k, v in spec.items() if k != "default"})
              for name, spec in TRAIN_OPTIONS.items()}
    with DAG(f"{pack.name}_train", schedule=data_asset(pack.name), start_date=START,
             catchup=False, max_active_runs=1,
             tags=["driftline", f"pack:{pack.name}", "train", "deploy"], default_args=_defaults(),
             params=params, doc_md=_doc(pack, (
                 f"Train → gate → blue-green deploy. Starts on new ingested data (bootstraps "
                 f"the first model; retrains on the `[retrain]` cadence rule if on), by hand "
                 f"with the Params, or from `{pack.name}_retrain_on_drift` (the retrain "
                 f"policy's drift and quality rules)."))) as dag:
        plan = PlanTrainingOperator(task_id="plan", pack=pack.name)
        train = training_operator(task_id="train", pack=pack.name, plan=plan.output)
        gate = ModelGateOperator(task_id="gate", pack=pack.name, candidate=train.output,
                                 retries=0, **_alerts(pack, "gate_refused"))
        deploy = BlueGreenDeployOperator(
            task_id="deploy", pack=pack.name, candidate=train.output,
            reason="{{ ti.xcom_pull(task_ids='plan')['reason'] }}", **_alerts(pack, "deploy"))
        plan >> train >> gate >> deploy
    return dag


def monitor_dag(pack: Pack) -> DAG:
    """Monthly: drift of the newest data and the served inputs against the live model, then
    the live model's quality on the month's outcomes once they land."""
    with DAG(f"{pack.name}_monitor", schedule="@monthly", start_date=START, catchup=False,
             max_active_runs=1, tags=["driftline", f"pack:{pack.name}", "monitor"],
             default_args=_defaults(), doc_md=_doc(pack, (
                 "Each run writes an Evidently drift report (JSON + HTML) for its month and "
                 f"publishes the `driftline_{pack.name}_drift_reports` Asset, then measures "
                 "the model that was live on the month's outcomes (pending until they land: "
                 f"`label.delay_days`) and publishes `driftline_{pack.name}_quality_reports`."
             ))) as dag:
        drift = DriftReportOperator(task_id="drift_report", pack=pack.name,
                                    **_alerts(pack, "drift"))
        drift >> LiveQualityOperator(task_id="live_quality", pack=pack.name,
                                     **_alerts(pack, "quality"))
    return dag


def retrain_on_drift_dag(pack: Pack) -> DAG:
    """Wait (deferred) until the retrain policy names an interval, claim it, trigger the
    train DAG with the reason."""
    found = "ti.xcom_pull(task_ids='wait_for_retrain_policy')"
    with DAG(f"{pack.name}_retrain_on_drift", schedule="@continuous", start_date=START,
             catchup=False, max_active_runs=1,
             tags=["driftline", f"pack:{pack.name}", "monitor", "train"],
             default_args=_defaults(), doc_md=_doc(pack, (
                 "Waits in the triggerer until the pack's retrain policy (`[retrain]`: drift "
                 "share, live quality drop, `consecutive` crossings, `cooldown_days`) names a "
                 "monitored interval and no train run is active, claims the interval so it "
                 f"never triggers twice, and starts `{pack.name}_train` with the reports, "
                 "figures and rule as the reason."))) as dag:
        policy = RetrainPolicySensor(task_id="wait_for_retrain_policy", pack=pack.name,
                                     deferrable=True, timeout=7 * 24 * 3600)
        policy >> TriggerDagRunOperator(
            task_id="trigger_retraining", trigger_dag_id=f"{pack.name}_train",
            conf={key: f"{{{{ {found}['{key}'] }}}}"
                  for key in ("reason", "drift_report_id", "quality_report_id", "window_end")})
    return dag


def rollback_dag(pack: Pack) -> DAG:
    """Manual rollback to the previous slot's model, with a reason."""
    with DAG(f"{pack.name}_rollback", schedule=None, start_date=START, catchup=False,
             max_active_runs=1, tags=["driftline", f"pack:{pack.name}", "deploy"],
             default_args=_defaults(retries=0),
             params={"reason": Param(type="string", minLength=3, description="Why roll back")},
             doc_md=_doc(pack, "Switch live traffic back to the previous slot's model.")) as dag:
        RollbackOperator(task_id="rollback", pack=pack.name, reason="{{ params.reason }}")
    return dag


PACK_DAGS = (ingest_dag, train_dag, monitor_dag, retrain_on_drift_dag, rollback_dag)


class BrokenPacks(DAG):
    """Stands for the packs that do not load: Airflow validates each DAG of a file on its
    own, so this one's failure is the file's import error while the other packs load."""

    def __init__(self, errors: dict[str, PackError], **kwargs):
        super().__init__(dag_id="driftline_broken_packs", schedule=None, start_date=START,
                         **kwargs)
        self.pack_errors = errors

    def validate(self):
        raise PackError.combine(self.pack_errors)


def render_pack_dags(settings: Settings | None = None) -> dict[str, DAG]:
    """Every pack's DAGs by dag id (plus a stand-in that fails validation, if any pack is
    broken). Assign the result into a DAG file's globals.

    :param settings: default :func:`~driftline.settings.load_settings` (environment and
        configuration file).
    """
    settings = settings or load_settings()
    workspaces, errors = open_workspaces(settings)
    dags: dict[str, DAG] = {}
    for ws in workspaces.values():
        for build in PACK_DAGS:
            dag = build(ws.pack)
            dags[dag.dag_id] = dag
    if errors:
        broken = BrokenPacks(errors)
        dags[broken.dag_id] = broken
    return dags
