"""Daily ingest: the upstream landing file → validated, DVC-versioned Parquet partition.

One data interval = one day. Publishes the ``driftline_flights`` Asset with the data version.
Backfill history with ``airflow backfill create --dag-id driftline_ingest ...``.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag
from driftline_provider.operators.ingest import IngestPartitionOperator
from driftline_provider.sensors.landing import LandingFileSensor


@dag(
    schedule="@daily",
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=4,
    tags=["driftline", "ingest"],
    default_args={"owner": "driftline", "retries": 2, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def driftline_ingest():
    wait = LandingFileSensor(task_id="wait_for_landing_file", poke_interval=60,
                             timeout=12 * 3600)
    wait >> IngestPartitionOperator(task_id="ingest_partition")


driftline_ingest()
