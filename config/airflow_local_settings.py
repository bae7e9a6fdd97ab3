"""Loaded by every Airflow process at start-up (on PYTHONPATH via the Makefile).

Task processes are forked from the scheduler's executor, so heavy libraries imported here
are loaded once instead of once per task (Evidently alone takes ~7 s to import on 2 cores).
Importing them costs the scheduler memory, not parse time: DAG files stay light.
"""

import logging
import os
import sqlite3
import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool


class _CurrentStream:
    """``sys.stdout`` or ``sys.stderr`` as it is when written to, not when DVC's log handlers
    were made.

    ``import dvc`` makes stream handlers for the ``dvc`` loggers holding the streams of that
    moment. Imported here, those are the streams of the process that loaded these settings; in
    a task process a Celery worker forks, they are closed, and DVC's handler raises on a
    failed write (``LoggingException``): ``Repo.init`` then stopped at its "Initialized DVC
    repository" message and left a data repository with no remote.

    :param name: ``stdout`` or ``stderr``.
    """

    def __init__(self, name: str):
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()

    def __getattr__(self, attr: str):
        return getattr(getattr(sys, self.name), attr)


def _dvc_logs_to_current_streams() -> None:
    """Point every DVC console handler at the stream current when it writes."""
    from dvc.logger import LoggerHandler

    for logger in ("dvc", "dvc_objects", "dvc_data"):
        for handler in logging.getLogger(logger).handlers:
            if isinstance(handler, LoggerHandler):
                handler.setStream(_CurrentStream(  # type: ignore[arg-type]
                    "stderr" if handler.level >= logging.WARNING else "stdout"))


if os.environ.get("DRIFTLINE_PRELOAD", "1") == "1":
    import dvc.repo  # noqa: F401
    import evidently.presets  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import xgboost  # noqa: F401

    _dvc_logs_to_current_streams()


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
