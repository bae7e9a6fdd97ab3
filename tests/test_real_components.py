"""The real-components guard (``tests/real_components.py``), run on a small test file in a
separate pytest process: locally a missing component skips, in CI it fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import ROOT

INNER = '''
import pytest
from tests.real_components import require_component

@pytest.mark.nginx
def test_nginx_marked():
    pass

@pytest.mark.k8s
def test_k8s_marked_plain_skip():
    pytest.skip("not today")

def test_helper():
    require_component("the Kubernetes testbed", False, "build.sh exited 3")

def test_reason_names_a_component():
    pytest.skip("kube-apiserver is not reachable")

def test_unrelated_skip():
    pytest.skip("only on Windows")

def test_passes():
    pass
'''
LONG_REASON = '''
import pytest

@pytest.mark.k8s
@pytest.mark.parametrize("n", [1, 2])
def test_same_long_reason(n):
    pytest.skip("testbed down\\nbuild log line")
'''
MODULE_SKIP = '''
import pytest
pytest.skip("nginx is missing", allow_module_level=True)
'''
INI = "[pytest]\naddopts = --strict-markers\nmarkers =\n    nginx\n    k8s\n    e2e\n"


def run(tmp_path: Path, files: dict[str, str], ci: bool) -> tuple[int, dict, str]:
    """pytest with the plugin on ``files`` in ``tmp_path``: exit status, {test: (outcome,
    message)} from the JUnit XML, and the output."""
    for name, text in {"pytest.ini": INI, **files}.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DRIFTLINE_REQUIRE_REAL")}
    env.update(PYTHONPATH=str(ROOT), DRIFTLINE_NGINX="/nonexistent/nginx", **({"CI": "true"}
                                                                             if ci else {}))
    junit = tmp_path / "junit.xml"
    # file order (-p no:randomly): which of two same-reason skips is shown in full depends on it
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.real_components",
                           "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-ra",
                           f"--junitxml={junit}",
                           *files], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        child = next(iter(case), None)
        outcomes[case.get("name")] = ("passed", "") if child is None else (
            child.tag, child.get("message", ""))
    return proc.returncode, outcomes, proc.stdout + proc.stderr


def test_locally_a_missing_component_skips(tmp_path):
    rc, outcomes, out = run(tmp_path, {"test_inner.py": INNER, "test_mod.py": MODULE_SKIP},
                            ci=False)
    assert rc == 0, out
    assert {n: o for n, (o, _) in outcomes.items()} == {
        "test_nginx_marked": "skipped", "test_k8s_marked_plain_skip": "skipped",
        "test_helper": "skipped", "test_reason_names_a_component": "skipped",
        "test_unrelated_skip": "skipped", "test_passes": "passed",
        "test_mod": "skipped"}  # the module-level skip
    assert "needs nginx: nginx is not runnable at /nonexistent/nginx" in \
        outcomes["test_nginx_marked"][1]
    assert "5 test(s) that need a real component did not run" in out, out
    assert "with CI=true this run would fail" in out


def test_in_ci_a_missing_component_fails_naming_test_and_reason(tmp_path):
    rc, outcomes, out = run(tmp_path, {"test_inner.py": INNER}, ci=True)
    assert rc == 1, out
    assert outcomes["test_passes"] == ("passed", "")
    assert outcomes["test_unrelated_skip"][0] == "skipped"  # not about a real component
    for name, reason in [
        ("test_nginx_marked", "needs nginx: nginx is not runnable at /nonexistent/nginx"),
        ("test_k8s_marked_plain_skip", "(skip reason: not today)"),
        ("test_helper", "needs the Kubernetes testbed: build.sh exited 3"),
        ("test_reason_names_a_component", "(skip reason: kube-apiserver is not reachable)"),
    ]:
        assert outcomes[name][0] in ("failure", "error"), (name, outcomes[name], out)
        assert f"test_inner.py::{name} may not be skipped in CI: it needs " in out, (name, out)
        assert reason in out, (name, out)
    assert "4 test(s) that need a real component did not run: the run fails" in out


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "local"])
def test_a_module_level_component_skip_fails_the_run_only_in_ci(tmp_path, ci):
    files = {"test_mod.py": MODULE_SKIP, "test_ok.py": "def test_ok():\n    pass\n"}
    rc, outcomes, out = run(tmp_path, files, ci=ci)
    assert {n: o for n, (o, _) in outcomes.items()} == {"test_mod": "skipped",
                                                       "test_ok": "passed"}
    assert rc == (1 if ci else 0), out
    assert "test_mod.py: nginx is missing" in out


def test_in_ci_a_long_reason_is_shown_in_full_once(tmp_path):
    rc, outcomes, out = run(tmp_path, {"test_long.py": LONG_REASON}, ci=True)
    assert rc == 1 and outcomes["test_same_long_reason[2]"][0] == "failure", out
    assert "(skip reason: testbed down\nbuild log line)" in out
    assert ("test_long.py::test_same_long_reason[2] may not be skipped in CI: it needs the "
            "Kubernetes testbed (skip reason: testbed down [in full at "
            "test_long.py::test_same_long_reason[1]])") in out
