"""The layer rules are enforced by ruff's configuration (pyproject.toml and the nested
configurations that extend it): a deliberate violation, linted as if it were a file at that
place in the tree, fails with the rule that forbids it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

RUFF = Path(sys.executable).parent / "ruff"


def lint_as(path: str, source: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), "check", "--no-cache", "--output-format", "concise",
                           "--stdin-filename", path, "-"], input=source, cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("path, source, rule", [
    ("include/driftline/probe.py", "from airflow.sdk import Asset\n\nA = Asset\n", "TID251"),
    ("include/driftline/probe.py", "import airflow\n\nA = airflow\n", "TID251"),
    ("plugins/driftline_provider/probe.py", "import pandas\n\nP = pandas\n", "TID253"),
    ("plugins/driftline_provider/probe.py", "import xgboost\n\nX = xgboost\n", "TID253"),
    ("dags/probe.py", "from evidently import Report\n\nR = Report\n", "TID253"),
])
def test_a_layer_violation_fails_lint(path, source, rule):
    result = lint_as(path, source)
    assert result.returncode == 1, result.stdout
    assert f"{path}:1:" in result.stdout and rule in result.stdout, result.stdout


@pytest.mark.parametrize("path, source", [
    ("plugins/driftline_provider/probe.py", "from airflow.sdk import Asset\n\nA = Asset\n"),
    ("plugins/driftline_provider/probe.py", "def f():\n    import pandas\n\n    return pandas\n"),
    ("include/driftline/probe.py", "import pandas\n\nP = pandas\n"),
])
def test_the_allowed_imports_pass_lint(path, source):
    result = lint_as(path, source)
    assert result.returncode == 0, result.stdout


def test_a_complex_function_fails_lint():
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(11))
    result = lint_as("include/driftline/probe.py", f"def f(x):\n{branches}    return -1\n")
    assert result.returncode == 1 and "C901" in result.stdout, result.stdout
