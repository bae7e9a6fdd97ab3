"""The layer rules are enforced by ruff's configuration (pyproject.toml and the nested
configurations that extend it): a deliberate violation, linted as if it were a file at that
place in the tree, fails with the rule that forbids it."""

from __future__ import annotations

import re
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


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """import-linter's contracts (pyproject.toml) on a copy of both packages in which
    ``module`` (a path below include/ or plugins/) gets ``line`` appended."""
    import os
    import shutil

    for src in ("include/driftline", "plugins/driftline_provider"):
        shutil.copytree(ROOT / src, tmp_path / Path(src).name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / Path(module).relative_to(Path(module).parts[0])
    target.write_text(target.read_text() + "\n" + line + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_the_import_contracts_hold_on_the_tree(tmp_path):
    result = lint_imports_with(tmp_path, "include/driftline/__init__.py", "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # a lazy import is still an arrow: the algorithm may not reach back into a platform
    ("include/driftline/serving/deploy.py",
     "def _probe():\n    from driftline.serving import bluegreen\n\n    return bluegreen",
     "One deploy algorithm"),
    ("include/driftline/serving/app.py",
     "def _probe():\n    from driftline.training import train\n\n    return train",
     "The model server, the gate and monitoring share scoring and drift"),
    ("include/driftline/registry.py",
     "def _probe():\n    from driftline_provider.hooks import driftline\n\n    return driftline",
     "the core never imports the provider"),
])
def test_an_import_against_a_contract_fails_lint_imports(tmp_path, module, line, broken):
    result = lint_imports_with(tmp_path, module, line)
    assert result.returncode == 1, result.stdout
    # each contract's name (wrapped over lines) and its verdict, in order
    verdicts = re.findall(r"(.+?) (KEPT|BROKEN)\b", " ".join(result.stdout.split()))
    assert [v for name, v in verdicts if broken in name] == ["BROKEN"], result.stdout
