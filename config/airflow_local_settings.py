"""Loaded by every Airflow process at start-up (on PYTHONPATH via the Makefile).

Task processes are forked from the scheduler's executor, so heavy libraries imported here
are loaded once instead of once per task (Evidently alone takes ~7 s to import on 2 cores).
Importing them costs the scheduler memory, not parse time: DAG files stay light.
"""

import os
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

if os.environ.get("DRIFTLINE_PRELOAD", "1") == "1":
    import dvc.repo  # noqa: F401
    import evidently.presets  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import xgboost  # noqa: F401


def _sqlite_write_lock_before_savepoint(conn, name) -> None:
    """Take SQLite's write lock (``BEGIN IMMEDIATE``) before a savepoint opened outside a
    transaction.

    pysqlite begins transactions lazily, so Airflow's ``session.begin_nested()`` runs its
    ``SAVEPOINT`` in autocommit mode: SQLite then starts a deferred transaction for it and
    its ``RELEASE`` commits it. ``airflow backfill create`` makes each run in such a savepoint,
    so its runs were committed one by one, the scheduler took them up at once, and a lock
    error part-way (a deferred transaction that read and then writes fails at once once
    another process committed) made Airflow delete the runs already committed: the scheduler
    then died on them (``ObjectDeletedError``). Inside ``BEGIN IMMEDIATE`` the savepoints are
    what they are on PostgreSQL: all runs commit together at the end, and the create waits
    for the lock (the busy timeout) instead of failing. WAL readers are not blocked by it.
    """
    if conn.dialect.name != "sqlite":
        return
    dbapi_connection = conn.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN IMMEDIATE")


def _sqlite_busy_timeout(dbapi_connection, connection_record) -> None:
    """Wait up to ``DRIFTLINE_SQLITE_BUSY_TIMEOUT_S`` (default 60 s) for SQLite's write lock
    instead of pysqlite's 5 s: under a backfill the scheduler, api-server and task processes
    all write."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        seconds = float(os.environ.get("DRIFTLINE_SQLITE_BUSY_TIMEOUT_S", "60"))
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


# DRIFTLINE_SQLITE_LOCKING=stock leaves Airflow's SQLite behaviour as it ships (the benchmark's
# "before" mode, bench/bench_backfill.py).
if os.environ.get("DRIFTLINE_SQLITE_LOCKING", "driftline") != "stock":
    event.listen(Engine, "savepoint", _sqlite_write_lock_before_savepoint)
    event.listen(Pool, "connect", _sqlite_busy_timeout)
