"""DAG for test_testbed.py: two KubernetesPodOperator tasks against the testbed.

``pod_ok`` prints a line and exits 0; ``pod_exit3`` prints a line and exits 3. Run as a script
(with AIRFLOW_HOME / DAGS_FOLDER set by the test) it calls ``dag.test()`` and prints one line
``DRIFTLINE_RESULT {json}`` with the run's and the tasks' states.
"""

from __future__ import annotations

import json
import os

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG

KUBECONFIG = os.environ.get("DRIFTLINE_TESTBED_KUBECONFIG", "/nonexistent/kubeconfig")
NAMESPACE = os.environ.get("DRIFTLINE_TESTBED_NAMESPACE", "default")
OK_LINE = os.environ.get("DRIFTLINE_TESTBED_OK_LINE", "hello from the driftline k8s testbed")
DEFERRABLE = os.environ.get("DRIFTLINE_TESTBED_DEFERRABLE") == "1"
FAIL_LINE = os.environ.get("DRIFTLINE_TESTBED_FAIL_LINE", "about to exit with status 3")


def pod_task(task_id: str, line: str, code: int) -> KubernetesPodOperator:
    """A pod that runs ``python -c`` on the node agent's host (the image is ignored there)."""
    return KubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        namespace=NAMESPACE,
        image="python:3.11-slim",
        cmds=["python", "-c"],
        arguments=[f"import sys; print({line!r}, flush=True); sys.exit({code})"],
        config_file=KUBECONFIG,
        in_cluster=False,
        get_logs=True,
        do_xcom_push=False,
        on_finish_action="delete_pod",
        startup_timeout_seconds=60,
        retries=0,
        deferrable=DEFERRABLE,  # dag.test() runs the trigger inline
        poll_interval=1,
    )


with DAG(dag_id="driftline_kpo_testbed", schedule=None, catchup=False) as dag:
    pod_task("pod_ok", OK_LINE, 0)
    pod_task("pod_exit3", FAIL_LINE, 3)


def task_states(run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(TaskInstance).where(
            TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run_id
        )
        return {ti.task_id: str(ti.state) for ti in session.scalars(query)}


if __name__ == "__main__":
    dag_run = dag.test()
    result = {"dag_run": str(dag_run.state), "tasks": task_states(dag_run.run_id)}
    print("DRIFTLINE_RESULT " + json.dumps(result), flush=True)
