"""pytest fixture for the loopback Kubernetes testbed.

Use it from any conftest.py::

    from tests.testbed.k8s.fixtures import kube_testbed  # noqa: F401

(or ``from testbed.k8s.fixtures import ...`` when ``tests/`` itself is not a package).
The fixture is session-scoped: one etcd + kube-apiserver + node agent for the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from . import testbed


@pytest.fixture(scope="session")
def kube_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.Testbed]:
    """A running testbed (``.kubeconfig``, ``.api_url``, ``.api()``); stopped at session end.

    Skips only when the apiserver cannot be built here (``build.sh`` exit status 3: no apt,
    no deb-src archive, no root for the build dependencies). Other failures are errors.
    """
    t0 = time.monotonic()
    try:
        bin_dir = testbed.build()
    except testbed.TestbedUnavailable as exc:
        pytest.skip(f"Kubernetes testbed cannot be built on this machine: {exc}")
    build_s = time.monotonic() - t0
    tb = testbed.start(tmp_path_factory.mktemp("k8s-testbed"), bin_dir=bin_dir)
    print(f"\nk8s testbed: cache check/build {build_s:.1f}s, start {tb.startup_seconds}s")
    try:
        yield tb
    finally:
        tb.stop()
