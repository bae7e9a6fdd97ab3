"""``make airflow ARGS=...`` (``scripts/airflow_stack.py airflow``) runs Airflow's CLI with
the environment of the stack ``make up`` starts."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT


def test_the_airflow_wrapper_runs_the_cli_with_the_stacks_environment(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "DRIFTLINE_HOME": str(tmp_path / "driftline"), "DRIFTLINE_PRELOAD": "0"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "airflow_stack.py"), "airflow",
                          "config", "get-value", "core", "dags_folder"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(ROOT / "dags")
    assert (tmp_path / "airflow" / "fernet_key").exists()  # the stack's shared secrets


def test_the_script_names_its_commands_when_given_another():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "airflow_stack.py"), "nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "watch | airflow" in out.stderr
