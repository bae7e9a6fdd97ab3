"""pytest plugin: in CI, a test that needs a real component may not be skipped.

The real components are nginx (marker ``nginx``), the Kubernetes testbed (marker ``k8s``,
fixture ``kube_testbed``), the Airflow scheduler (marker ``e2e``), a headless Chromium
(marker ``browser``), an S3-compatible server, moto's (marker ``s3``, fixture
``s3_server`` in ``s3_server.py``), the postgres-celery tier's PostgreSQL 15 server
(marker ``postgres``: ``initdb``, ``pg_ctl``, ``postgres``) and Redis (marker ``redis``:
``redis-server``), and the docker-compose stack (marker ``compose``: a private Docker
daemon, ``testbed/compose/``). Locally a missing
component skips its tests. With ``CI=true`` (or ``DRIFTLINE_REQUIRE_REAL=1``):

- ``require_component`` fails instead of skipping;
- any other skip of a test that carries one of those markers, or whose reason mentions a
  real component, is reported as a failure naming the test and the skip reason;
- a collection-time skip whose reason mentions one (``pytest.skip(allow_module_level=True)``)
  makes the run exit non-zero.

Every such test is listed at the end of the run. Registered from ``tests/conftest.py``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import pytest

COMPONENT_MARKERS = {"nginx": "nginx", "k8s": "the Kubernetes testbed",
                     "e2e": "the Airflow scheduler", "browser": "a headless Chromium",
                     "s3": "an S3-compatible server", "postgres": "a PostgreSQL 15 server",
                     "redis": "a Redis server", "compose": "the docker-compose stack"}
# What a skip reason says when it is about a real component.
COMPONENT_WORDS = re.compile(r"nginx|kube|k8s|testbed|scheduler|chromium|playwright|moto"
                             r"|postgres|initdb|redis|docker", re.IGNORECASE)

_not_exercised: list[tuple[str, str]] = []  # (test or collector id, why), in run order


class ComponentMissing(pytest.fail.Exception):
    """A required real component is missing in CI (a test failure, never a skip)."""


def required() -> bool:
    """Whether real components must be exercised: ``CI`` is true, or
    ``DRIFTLINE_REQUIRE_REAL=1``."""
    return (os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}
            or os.environ.get("DRIFTLINE_REQUIRE_REAL", "").strip() == "1")


def require_component(name: str, available: bool, why: str) -> None:
    """Skip the current test when ``name`` is not ``available`` (``why`` says what is
    missing); fail it instead when ``required()``."""
    if available:
        return
    if required():
        raise ComponentMissing(f"needs {name}: {why}", pytrace=False)
    pytest.skip(f"needs {name}: {why}")


@functools.cache
def nginx_problem() -> str | None:
    """Why the nginx that the router runs (``DRIFTLINE_NGINX``, default /usr/sbin/nginx)
    cannot run here; None when ``nginx -v`` works."""
    from driftline.serving.router import NGINX

    hint = "make install installs it; DRIFTLINE_NGINX names another binary"
    try:
        proc = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"nginx is not runnable at {NGINX} ({exc.strerror}; {hint})"
    if proc.returncode != 0:
        return f"{NGINX} -v exited {proc.returncode}: {proc.stderr.strip()[-300:]} ({hint})"
    return None


@functools.cache
def postgres_problem() -> str | None:
    """Why the PostgreSQL server cannot run here; None when its binaries are on PATH (and,
    as root, ``unshare``: PostgreSQL refuses root, ``scripts/services.py`` runs it in a user
    namespace)."""
    needed = ["initdb", "pg_ctl", "postgres"] + (["unshare"] if os.geteuid() == 0 else [])
    missing = [name for name in needed if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH (PostgreSQL 15 server binaries)"
    return None


@functools.cache
def redis_problem() -> str | None:
    """Why Redis cannot run here; None when ``redis-server`` is on PATH."""
    if shutil.which("redis-server") is None:
        return ("redis-server is not on PATH (Debian package redis-server; make install "
                "and .ci/run install it)")
    return None


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def _chromium_problem() -> str | None:
    from tests.browser import chromium_problem

    return chromium_problem()


def _moto_problem() -> str | None:
    from tests.s3_server import moto_problem

    return moto_problem()


PROBLEM_CHECKS = {"nginx": nginx_problem, "browser": _chromium_problem,
                  "postgres": postgres_problem, "redis": redis_problem, "s3": _moto_problem}
"""Marker → what says why its component cannot run (None: it can), checked before each
test that carries the marker."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, problem_of in PROBLEM_CHECKS.items():
        if item.get_closest_marker(marker):
            problem = problem_of()
            require_component(COMPONENT_MARKERS[marker], problem is None, problem or "")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if hasattr(report, "wasxfail"):
        return report
    if call.excinfo is not None and call.excinfo.errisinstance(ComponentMissing):
        reason = call.excinfo.value.msg
    elif report.skipped:
        reason = _skip_reason(report)
    else:
        return report
    needs = [what for marker, what in COMPONENT_MARKERS.items() if item.get_closest_marker(marker)]
    if not (needs or COMPONENT_WORDS.search(reason)):
        return report
    first = next((n for n, r in _not_exercised if r == reason), None)
    _not_exercised.append((item.nodeid, reason))
    if required():
        if first is not None and "\n" in reason:  # a build log tail, say: shown there
            reason = f"{reason.splitlines()[0]} [in full at {first}]"
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} may not be skipped in CI: it needs "
                           f"{' and '.join(needs) or 'a real component'} (skip reason: {reason})")
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and COMPONENT_WORDS.search(_skip_reason(report)):
        _not_exercised.append((report.nodeid, _skip_reason(report)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _not_exercised and required() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if not _not_exercised:
        return
    ci = required()
    terminalreporter.section("real components not exercised", red=ci, yellow=not ci)
    for nodeid, reason in _not_exercised:
        terminalreporter.line(f"{nodeid}: {reason.splitlines()[0] if reason else ''}")
    terminalreporter.line(
        f"{len(_not_exercised)} test(s) that need a real component did not run: "
        + ("the run fails (CI=true / DRIFTLINE_REQUIRE_REAL=1)" if ci
           else "skipped here; with CI=true this run would fail"), red=ci, yellow=not ci)
