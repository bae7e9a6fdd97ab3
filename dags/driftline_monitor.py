"""Monthly drift monitoring of the newest data and served inputs against the live model.

Each run writes an Evidently drift report (JSON + HTML) for its month and publishes the
``driftline_drift_reports`` Asset; ``driftline_retrain_on_drift`` watches the reports.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag
from driftline_provider.operators.monitor import DriftReportOperator


@dag(
    schedule="@monthly",
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["driftline", "monitor"],
    default_args={"owner": "driftline", "retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def driftline_monitor():
    DriftReportOperator(task_id="drift_report")


driftline_monitor()
