"""The SQLite locking that ``config/airflow_local_settings.py`` gives every Airflow process,
checked on a real SQLite database through SQLAlchemy, in a fresh interpreter per mode (the
listeners are process-wide, as they are in Airflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# Airflow's backfill create, reduced to its shape: commit a row, then add rows each in
# ``session.begin_nested()``; another process (here a second connection) watches.
SCRIPT = r"""
import json, sys, threading
import airflow_local_settings  # registers the listeners, as Airflow's start-up does
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

path = sys.argv[1]
engine = create_engine(f"sqlite:///{path}")
with engine.begin() as c:
    c.exec_driver_sql("PRAGMA journal_mode=WAL")
    c.exec_driver_sql("CREATE TABLE run (id INTEGER PRIMARY KEY)")
    c.exec_driver_sql("CREATE TABLE other (id INTEGER PRIMARY KEY)")
import sqlite3
watcher = sqlite3.connect(path, isolation_level=None, timeout=0.2)
seen, outcome = [], "committed"
session = Session(engine)
try:
    session.execute(text("SELECT 1")).all()
    session.commit()
    for i in range(3):
        with session.begin_nested():
            session.execute(text("SELECT count(*) FROM run")).all()
            if i == 1:  # another process commits between this read and the write
                try:
                    watcher.execute("INSERT INTO other VALUES (NULL)")
                except sqlite3.OperationalError as e:
                    seen.append(f"other writer: {e}")
            session.execute(text("INSERT INTO run VALUES (:i)"), {"i": i})
        seen.append(watcher.execute("SELECT count(*) FROM run").fetchone()[0])
    session.commit()
except Exception as e:
    outcome = f"{type(e).__name__}: {e}".splitlines()[0]
    session.rollback()
print(json.dumps({"seen_before_commit": seen, "outcome": outcome,
                  "rows_after": watcher.execute("SELECT count(*) FROM run").fetchone()[0]}))
"""


def _run(tmp_path, locking: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "config"), "DRIFTLINE_PRELOAD": "0",
           "DRIFTLINE_SQLITE_LOCKING": locking, "DRIFTLINE_SQLITE_BUSY_TIMEOUT_S": "5"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"{locking}.db")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_stock_sqlite_commits_each_nested_run_and_fails_a_stale_write(tmp_path):
    """The crash's precondition, on Airflow's SQLite as it ships: each savepoint's release
    commits (another process sees the first run at once), and the write after another
    process's commit fails immediately, leaving the first run committed."""
    result = _run(tmp_path, "stock")
    assert result["seen_before_commit"][0] == 1
    assert "locked" in result["outcome"]
    assert result["rows_after"] == 1


def test_driftline_sqlite_keeps_nested_runs_in_one_transaction_holding_the_write_lock(tmp_path):
    """With the listeners: nothing is visible before the outer commit, the other writer is
    the one that waits (and here times out), and all three runs commit together."""
    result = _run(tmp_path, "driftline")
    assert result["outcome"] == "committed"
    assert result["seen_before_commit"][:1] == [0]
    assert any("other writer: database is locked" in str(s) for s in result["seen_before_commit"])
    assert result["rows_after"] == 3


@pytest.mark.parametrize("seconds", ["7.5"])
def test_the_busy_timeout_is_set_on_every_sqlite_connection(tmp_path, seconds):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "config"), "DRIFTLINE_PRELOAD": "0",
           "DRIFTLINE_SQLITE_BUSY_TIMEOUT_S": seconds}
    code = ("import airflow_local_settings\nfrom sqlalchemy import create_engine\n"
            f"e = create_engine('sqlite:///{tmp_path}/t.db')\n"
            "with e.connect() as c: print(c.exec_driver_sql('PRAGMA busy_timeout').scalar())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "7500"


# DVC's console handlers hold the streams of the moment ``import dvc`` ran; a Celery task
# process runs after those were closed. Here: import, close that stdout, give the process a
# new one, then make a DVC repository.
DVC_AFTER_STDOUT_CLOSED = r"""
import io, sys
sys.stdout = io.TextIOWrapper(io.BytesIO())  # the stream of the process that imported DVC
if sys.argv[2] == "settings":
    import airflow_local_settings  # imports dvc, as every Airflow process does
else:
    import dvc.repo
sys.stdout.close()
sys.stdout = now = io.StringIO()  # the task process's own stdout
from dvc.repo import Repo
try:
    Repo.init(sys.argv[1], no_scm=True).close()
    outcome = "initialised"
except Exception as exc:
    outcome = type(exc).__name__
sys.__stdout__.write(f"{outcome}|{now.getvalue().strip()}")
"""


@pytest.mark.parametrize("imported, outcome", [("dvc", "LoggingException"),
                                               ("settings", "initialised")])
def test_dvc_logs_to_the_current_stdout_after_the_one_it_was_imported_with_closed(
        tmp_path, imported, outcome):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "config"), "DRIFTLINE_PRELOAD": "1"}
    out = subprocess.run([sys.executable, "-c", DVC_AFTER_STDOUT_CLOSED, str(tmp_path / "r"),
                          imported], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got, printed = out.stdout.split("|", 1)
    assert got == outcome, out.stderr[-2000:]
    if outcome == "initialised":
        assert "Initialized DVC repository" in printed
        assert (tmp_path / "r" / ".dvc" / "config").exists()
