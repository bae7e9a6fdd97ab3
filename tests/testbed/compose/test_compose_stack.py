"""docker-compose.yaml, built and started: PostgreSQL, Redis, CeleryExecutor with one worker,
the scheduler, dag-processor, triggerer and api-server, and the serving stack in the worker.

Images are built from Debian's packages by build.sh (no registry is reachable here) and
cached; the daemon is private to this module. Marker ``compose``: deselected from the default
run (``make test``), run by ``make test-compose`` (and ``.ci/run``). Everything goes through
the published ports (api-server, router) or ``docker-compose exec``, as a user would.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
import pytest
from driftline.serving.probe import free_ports

from tests.helpers import ROOT
from tests.real_components import require_component

from .stack import ComposeStack, ComposeUnavailable, DockerDaemon, build_images, docker_problem

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import AirflowApi

pytestmark = pytest.mark.compose

START, END = "2013-01-01", "2013-01-06"  # one ingest backfill; the train window
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
REPLAY = ("import datetime as dt; from driftline.landing import replay; "
          "from driftline.settings import load_settings; "
          "from driftline.workspace import open_workspace; "
          f"replay(open_workspace('flights', load_settings()), dt.date.fromisoformat('{START}'), "
          f"dt.date.fromisoformat('{END}')); print('replayed')")


def _wait_healthy(url: str, timeout: float = 900) -> dict:
    """The api-server's health once every component reports healthy."""
    deadline, health = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/api/v2/monitor/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            health = {}
        if health and all(health.get(c, {}).get("status") == "healthy" for c in COMPONENTS):
            return health
        time.sleep(3)
    raise TimeoutError(f"compose stack not healthy after {timeout}s: {health}")


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """The stack, up and healthy; afterwards its containers, network, volumes and the daemon
    are removed. Prints the build/load and start-up times."""
    problem = docker_problem()
    require_component("the docker-compose stack", problem is None, problem or "")
    daemon = DockerDaemon(tmp_path_factory.mktemp("docker", numbered=True))
    daemon.start()
    stack = None
    try:
        began = time.monotonic()
        try:
            build_images(daemon)
        except ComposeUnavailable as exc:
            require_component("the docker-compose stack", False, str(exc))
        built = time.monotonic()
        api_port, router_port = free_ports(2)
        stack = ComposeStack(daemon, f"driftline-test-{uuid.uuid4().hex[:8]}",
                             {"DRIFTLINE_API_PORT": api_port, "DRIFTLINE_ROUTER_PORT": router_port})
        stack.up()
        health = _wait_healthy(stack.api_url)
        print(f"\ncompose: images {built - began:.0f}s, up and healthy "
              f"{time.monotonic() - built:.0f}s")
        yield stack, health
    finally:
        if stack is not None:
            print(stack.logs())
            stack.down()
        daemon.stop()


@pytest.fixture(scope="module")
def api(compose):
    stack, _ = compose
    return AirflowApi(stack.api_url, "admin", "admin")


def test_every_component_is_healthy_on_postgres(compose):
    _, health = compose
    assert {c: health[c]["status"] for c in COMPONENTS} == dict.fromkeys(COMPONENTS, "healthy")


def test_the_driftline_dags_parse_with_no_import_error(api):
    for stage in ("ingest", "train", "monitor", "retrain_on_drift"):
        api.wait_for_dag(f"flights_{stage}", timeout=600)
    errors = api._call("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]


def test_ingest_and_train_succeed_on_the_celery_worker_and_the_model_serves(compose, api):
    stack, _ = compose
    api.wait_for_dag("flights_ingest", timeout=600)
    assert "replayed" in stack.exec("worker", "python", "-c", REPLAY)
    api.backfill("flights_ingest", START, END, max_active_runs=4)
    days = {f"2013-01-0{d}" for d in range(1, 7)}
    runs = api.wait_runs("flights_ingest", days, timeout=1800)
    assert {r["state"] for r in runs} == {"success"}, runs

    api.set_paused("flights_train", False)
    run_id = api.trigger("flights_train", {"window_start": START, "window_end": END,
                                           "reason": "compose test"})
    run = api.wait_run("flights_train", run_id, timeout=1800)
    states = {t["task_id"]: (t["state"], t["hostname"])
              for t in api.task_instances("flights_train", run_id)}
    assert run["state"] == "success", states
    assert all(host and host != "api-server" for _, host in states.values()), states

    # the deploy task started the router in the worker: reachable on the host's loopback
    version = httpx.get(f"{stack.router_url}/flights/version", timeout=30).raise_for_status()
    assert version.json()["model_version"], version.text


def test_no_airflow_secret_is_in_the_compose_config_or_the_environment(compose):
    stack, _ = compose
    secrets = {name: stack.exec("scheduler", "cat", f"/opt/airflow/secrets/{name}").strip()
               for name in ("jwt_secret", "api_secret_key", "fernet_key")}
    assert all(len(value) >= 32 for value in secrets.values()), secrets.keys()
    config = stack.compose("config").stdout
    env = json.loads(stack.compose("exec", "-T", "api-server", "python", "-c",
                                   "import json, os; print(json.dumps(dict(os.environ)))").stdout)
    for name, value in secrets.items():
        assert value not in config, name
        assert value not in json.dumps(env), name
