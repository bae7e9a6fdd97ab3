"""The core (``include/driftline``) imports no Airflow: it runs in training pods and model
servers where Airflow is not installed. Checked two independent ways, directly here (the
training image's build checks it again, tests/plugins/operators/test_training_image.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

CORE = ROOT / "include" / "driftline"
FORBIDDEN = ("airflow", "driftline_provider")


def core_modules() -> list[str]:
    """Every module of the core, named from its files (not from the package's own imports)."""
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of Airflow or the provider in ``source``, wherever it
    is (module level, inside a function, or ``importlib.import_module("...")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                  "import_module", "__import__", "import_string")):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in FORBIDDEN]
    return sorted(found)


def test_the_scan_finds_an_import_wherever_it_is():
    source = ("import os\n"
              "def f():\n    from airflow.sdk import DAG\n"
              "def g():\n    import importlib\n    importlib.import_module('airflow.models')\n"
              "from driftline_provider.hooks import driftline\n"
              "from .airflow import x\n")  # a relative module of that name is not Airflow
    assert forbidden_imports(source) == [(3, "airflow.sdk"), (6, "airflow.models"),
                                         (7, "driftline_provider.hooks")]


def test_no_core_file_imports_airflow_or_the_provider():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 25 and CORE / "serving" / "kubernetes" / "platform.py" in files
    found = {str(p.relative_to(ROOT)): hits for p in files
             if (hits := forbidden_imports(p.read_text()))}
    assert found == {}


def test_importing_every_core_module_loads_no_airflow():
    """A fresh interpreter imports each core module; Airflow is installed here, so only the
    core's own imports could load it."""
    modules = core_modules()
    assert "driftline.serving.app" in modules and "driftline.packs.draft" in modules
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps({'loaded': sorted(m for m in sys.modules if m.startswith("
            "'driftline')), 'forbidden': sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {FORBIDDEN!r})}}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no airflow settings
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(modules) <= set(result["loaded"])
    assert result["forbidden"] == []
    # the installed core is this checkout's include/ (not a stale copy elsewhere)
    where = subprocess.run([sys.executable, "-c", "import driftline; print(driftline.__file__)"],
                           capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert Path(where) == CORE / "__init__.py"
