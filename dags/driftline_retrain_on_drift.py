"""Retrain on drift: wait (deferred, in the triggerer) for a drift report that crosses the
threshold, claim it so it never triggers twice, and start ``driftline_train`` with the
report as the reason. Runs continuously: a new wait starts when one ends.
"""

from datetime import datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag
from driftline_provider.sensors.drift import DriftThresholdSensor


@dag(
    schedule="@continuous",
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["driftline", "monitor", "train"],
    default_args={"owner": "driftline", "retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def driftline_retrain_on_drift():
    drift = DriftThresholdSensor(task_id="wait_for_drift", deferrable=True,
                                 timeout=7 * 24 * 3600)
    TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id="driftline_train",
        conf={
            "reason": "drift report {{ ti.xcom_pull(task_ids='wait_for_drift')['report_id'] }}"
                      " share {{ ti.xcom_pull(task_ids='wait_for_drift')['share'] }}",
            "drift_report_id": "{{ ti.xcom_pull(task_ids='wait_for_drift')['report_id'] }}",
            "window_end": "{{ ti.xcom_pull(task_ids='wait_for_drift')['end'] }}",
        },
    ).set_upstream(drift)


driftline_retrain_on_drift()
