"""Train → gate → blue-green deploy.

Starts on new ingested data (the ``driftline_flights`` Asset: bootstraps the first model, and
retrains every ``retrain_every_days`` if set), by hand from the UI with the Params below, or
from ``driftline_retrain_on_drift`` when a drift report crosses its threshold.
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag
from driftline_provider.assets import FLIGHTS
from driftline_provider.operators.deploy import BlueGreenDeployOperator
from driftline_provider.operators.gate import ModelGateOperator
from driftline_provider.operators.training import PlanTrainingOperator, training_operator

DATE = {"type": ["null", "string"], "format": "date"}

HYPERPARAMETERS = {
    "num_boost_round": {"type": "integer", "minimum": 1, "maximum": 5000},
    "max_depth": {"type": "integer", "minimum": 1, "maximum": 16},
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "subsample": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "colsample_bytree": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "min_child_weight": {"type": "number", "minimum": 0},
    "device": {"type": "string", "enum": ["cpu", "cuda"]},
}


@dag(
    schedule=FLIGHTS,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["driftline", "train", "deploy"],
    default_args={"owner": "driftline", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "window_start": Param(None, **DATE, description="First training day (default: "
                              "window_end minus the window length)"),
        "window_end": Param(None, **DATE, description="Last training day (default: newest)"),
        "window_days": Param(None, type=["null", "integer"], minimum=16, maximum=366),
        "data_version": Param(None, type=["null", "string"], pattern="^[0-9a-f]{7,40}$",
                              description="Data repo commit (default: newest)"),
        "hyperparameters": Param({}, type="object", properties=HYPERPARAMETERS,
                                 additionalProperties=False),
        "reason": Param("", type="string", maxLength=500),
        "retrain_every_days": Param(None, type=["null", "integer"], minimum=1),
        "drift_report_id": Param(None, type=["null", "string"]),
    },
    doc_md=__doc__,
)
def driftline_train():
    plan = PlanTrainingOperator(task_id="plan")
    train = training_operator(task_id="train", plan=plan.output)
    gate = ModelGateOperator(task_id="gate", candidate=train.output, retries=0)
    deploy = BlueGreenDeployOperator(task_id="deploy", candidate=train.output,
                                     reason="{{ ti.xcom_pull(task_ids='plan')['reason'] }}")
    plan >> train >> gate >> deploy


driftline_train()
