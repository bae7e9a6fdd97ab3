"""Manual rollback: switch live traffic back to the previous slot's model, with a reason."""

from datetime import datetime

from airflow.sdk import Param, dag
from driftline_provider.operators.deploy import RollbackOperator


@dag(
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["driftline", "deploy"],
    default_args={"owner": "driftline", "retries": 0},
    params={"reason": Param(type="string", minLength=3, description="Why roll back")},
    doc_md=__doc__,
)
def driftline_rollback():
    RollbackOperator(task_id="rollback", reason="{{ params.reason }}")


driftline_rollback()
