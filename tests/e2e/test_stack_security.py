"""The Airflow stack that ``make up`` starts keeps its secrets to itself: its files are
readable by this user only, connection passwords are encrypted (a Fernet key), and nothing it
starts listens beyond loopback; and a component killed with ``kill -9`` leaves nothing
behind once the stack is started again. A real stack (scheduler, dag-processor, triggerer,
api-server), started with the demo's own helper."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from driftline.serving.probe import free_ports

from tests.helpers import LOOPBACK, ROOT, TEST_CONFIG, group_pids, listening_sockets

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import AirflowStack, airflow_env, group_members

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack-security")
    [api_port] = free_ports(1)
    env = airflow_env(ROOT, root / "airflow", root / "driftline", port=api_port, extra={
        "DRIFTLINE_CONFIG": str(TEST_CONFIG),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root}/airflow/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    })
    stack = AirflowStack(env)
    stack.init()
    stack.start()
    try:
        stack.wait_healthy()
        yield stack
    finally:
        stack.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stacks_files_are_private(stack):
    home = stack.home
    assert mode(home) == 0o700
    for name in ("passwords.json", "jwt_secret", "fernet_key", "airflow.db"):
        assert mode(home / name) == 0o600, name
    for log in (home / "logs").glob("*.log"):
        assert mode(log) & 0o077 == 0, log


def test_connection_passwords_are_encrypted_with_the_stacks_fernet_key(stack):
    env = {**stack.env, "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    subprocess.run([sys.executable, "-m", "airflow", "connections", "add", "probe",
                    "--conn-type", "driftline", "--conn-password", "s3cret-probe"],
                   env=env, check=True, capture_output=True)
    raw = (stack.home / "airflow.db").read_bytes()
    assert b"s3cret-probe" not in raw
    got = subprocess.run([sys.executable, "-m", "airflow", "connections", "get", "probe",
                          "-o", "json"], env=env, check=True, capture_output=True, text=True)
    assert "s3cret-probe" in got.stdout  # the stack itself can read it back


def test_nothing_the_stack_starts_listens_beyond_loopback(stack):
    listening = listening_sockets(group_pids(list(stack.running().values())))
    assert ("0100007F", stack.port) in listening  # the api-server, seen by this check
    exposed = {(addr, port) for addr, port in listening if addr not in LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_a_killed_schedulers_workers_are_reaped_when_the_stack_starts_again(stack):
    """Issue 9: after ``kill -9`` of the scheduler its LocalExecutor workers stayed, idle.
    The next start stops them (and only them) and starts a new scheduler."""
    import signal
    import time

    scheduler = stack.running()["scheduler"]
    others = {n: p for n, p in stack.running().items() if n != "scheduler"}
    deadline = time.monotonic() + 60
    while len(group_members(scheduler, stack.home)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # the executor forks its workers once the scheduler is up
    workers = [p for p in group_members(scheduler, stack.home) if p != scheduler]
    assert workers, "the scheduler started no LocalExecutor workers"
    os.kill(scheduler, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "scheduler" in stack.running():
        time.sleep(0.2)
    assert "scheduler" not in stack.running()
    assert group_members(scheduler, stack.home) == [], "workers left behind"
    stack.start()
    stack.wait_healthy()
    now = stack.running()
    assert now["scheduler"] != scheduler
    assert {n: p for n, p in now.items() if n != "scheduler"} == others  # untouched


# What Airflow itself serves without a login: its OpenAPI docs, the login flow, health and
# version. Everything else, the driftline page included, must refuse an anonymous client.
PUBLIC = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/health",
          "/api/v2/monitor/health", "/api/v2/version", "/api/v2/auth/login",
          "/api/v2/auth/logout", "/auth/token", "/auth/token/login", "/auth/docs",
          "/auth/docs/oauth2-redirect", "/auth/redoc", "/auth/openapi.json",
          "/execution/docs", "/execution/docs/oauth2-redirect", "/execution/redoc",
          "/execution/openapi.json", "/execution/changelog"}


def get_routes() -> list[str]:
    """Every GET route without path parameters of the api-server app, mounted apps (the
    driftline plugin's, from its entry point) included."""
    from airflow.api_fastapi.app import create_app
    from starlette.routing import Mount

    def walk(routes, prefix=""):
        for route in routes:
            if isinstance(route, Mount) and getattr(route.app, "routes", None):
                yield from walk(route.app.routes, prefix + route.path)
            elif "GET" in (getattr(route, "methods", None) or ()) and "{" not in route.path:
                yield prefix + route.path

    return sorted(set(walk(create_app().routes)))


def test_every_route_not_meant_to_be_public_refuses_an_anonymous_client(stack):
    import httpx

    routes = get_routes()
    assert {"/driftline/", "/driftline/api/overview", "/api/v2/dags"} <= set(routes)
    answered = {path: httpx.get(stack.url + path, timeout=30, follow_redirects=False)
                for path in routes if path not in PUBLIC}
    open_to_anyone = {p: r.status_code for p, r in answered.items()
                      if r.status_code not in (401, 403)}
    assert open_to_anyone == {}
    token = httpx.post(f"{stack.url}/auth/token", json={
        "username": stack.user, "password": stack.password}, timeout=30).json()["access_token"]
    logged_in = httpx.get(f"{stack.url}/driftline/api/overview", timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    assert logged_in.status_code == 200 and "packs" in logged_in.json()
    page = httpx.get(f"{stack.url}/driftline/", timeout=60, cookies={"_token": token})
    assert page.status_code == 200 and "<h1>driftline</h1>" in page.text
