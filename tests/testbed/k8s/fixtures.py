"""pytest fixture for the loopback Kubernetes testbed.

Use it from any conftest.py::

    from testbed.k8s.fixtures import kube_testbed  # noqa: F401

(``tests/`` is on ``sys.path`` because ``tests/conftest.py`` is not in a package; this is
the module name ``tests/testbed/k8s/conftest.py`` loads it under). The fixture is
session-scoped: one etcd + kube-apiserver + node agent for the whole run. pytest makes a
separate session fixture for every conftest.py that imports it, so the testbed itself is kept
here, started by the first and stopped by the last of them. Import it under another module
name (``tests.testbed.k8s.fixtures``) and a second testbed starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.real_components import require_component

from . import testbed

_shared: dict = {"testbed": None, "users": 0}


@pytest.fixture(scope="session")
def kube_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.Testbed]:
    """A running testbed (``.kubeconfig``, ``.api_url``, ``.api()``); stopped at session end.

    When the apiserver cannot be built here (``build.sh`` exit status 3: no apt, no deb-src
    archive, no root for the build dependencies) it skips, or fails in CI
    (``require_component``). Other failures are errors.
    """
    if _shared["testbed"] is None:
        t0 = time.monotonic()
        try:
            bin_dir = testbed.build()
        except testbed.TestbedUnavailable as exc:
            require_component("the Kubernetes testbed", False,
                              f"it cannot be built on this machine: {exc}")
        build_s = time.monotonic() - t0
        _shared["testbed"] = testbed.start(tmp_path_factory.mktemp("k8s-testbed"), bin_dir=bin_dir)
        print(
            f"\nk8s testbed: cache check/build {build_s:.1f}s, "
            f"start {_shared['testbed'].startup_seconds}s"
        )
    _shared["users"] += 1
    try:
        yield _shared["testbed"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared["testbed"].stop()
            _shared["testbed"] = None
