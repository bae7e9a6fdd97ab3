"""Test-session environment: an isolated Airflow home and driftline home, set before Airflow
is imported anywhere, plus shared real data (the flights pack's real 2013 flights, a real DVC
repo, a real model)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from tests.helpers import (
    DATA_END,
    DATA_START,
    LIFECYCLE_RUN,
    PACKS,
    ROOT,
    SESSION,
    TEST_CONFIG,
    workspace_at,
)

pytest_plugins = ["tests.real_components"]  # real components may not be skipped in CI
_SESSION = SESSION

os.environ.update({
    "AIRFLOW_HOME": str(_SESSION / "airflow"),
    "AIRFLOW_CONFIG": str(ROOT / "airflow.cfg"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(_SESSION / "airflow" / "plugins"),
    # the Makefile exports the repository's .airflow/passwords.json: never touch it here
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_SESSION / "airflow"
                                                             / "passwords.json"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION}/airflow/airflow.db",
    "DRIFTLINE_HOME": str(_SESSION / "driftline"),
    "DRIFTLINE_CONFIG": str(TEST_CONFIG),
    "DRIFTLINE_PACKS": str(PACKS),
    "DRIFTLINE_PRELOAD": "0",
})
(_SESSION / "airflow" / "plugins").mkdir(parents=True, exist_ok=True)


AIRFLOW_DEPRECATIONS = ("airflow.exceptions.RemovedInAirflow4Warning",
                        "airflow.sdk.exceptions.RemovedInAirflow4Warning",
                        "airflow.exceptions.AirflowProviderDeprecationWarning")


def pytest_collection_modifyitems(items):
    """Airflow's deprecation warnings fail the test that causes them (an API Airflow 4
    removes fails now). A mark, resolved when the test runs, after Airflow's home is set."""
    for item in items:
        for category in AIRFLOW_DEPRECATIONS:
            item.add_marker(pytest.mark.filterwarnings(f"error::{category}"))


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database for this session (SQLite)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy())
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def flights_pack():
    """The shipped flights pack, loaded and validated."""
    from driftline.packs import load_pack

    return load_pack(PACKS / "flights")


@pytest.fixture(scope="session")
def flights(flights_pack):
    """Every 2013 flight joined to its weather (the flights pack's source)."""
    return flights_pack.load_source()


@pytest.fixture(scope="session")
def data_home(tmp_path_factory, flights):
    """A driftline home with DATA_START..DATA_END replayed and ingested into a real DVC repo."""
    from driftline.landing import replay
    from driftline.packs.timeline import iter_intervals
    from driftline.versioning import DataRepo

    home = tmp_path_factory.mktemp("shared-home")
    ws = workspace_at(home)
    replay(ws, DATA_START, DATA_END, source=flights)
    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(DATA_START, DATA_END, "daily"):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])
    return home


@pytest.fixture(scope="session")
def trained_home(data_home):
    """``data_home`` plus one trained flights model version (v0001)."""
    from driftline.training import train
    from driftline.versioning import DataRepo

    ws = workspace_at(data_home)
    train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, reason="shared fixture")
    return data_home


BIKES_MONTHS = (dt.date(2011, 1, 1), dt.date(2011, 2, 1))
BIKES_TRAINED_UNTIL = dt.date(2011, 2, 28)  # a window ends on its last interval's last day


@pytest.fixture(scope="session")
def bikes_trained_home(tmp_path_factory):
    """A driftline home with the bikes pack's Jan-Feb 2011 partitions and one bikes model
    (v0001, trained on both months: window end 2011-02-28)."""
    import numpy as np
    from driftline.packs import load_pack
    from driftline.training import train
    from driftline.versioning import DataRepo

    home = tmp_path_factory.mktemp("bikes-trained-home")
    ws = workspace_at(home, "bikes")
    pack = ws.pack
    rows = load_pack(PACKS / "bikes").load_source()
    dates = pack.local_dates(rows[pack.time_column])
    repo = DataRepo.of(ws)
    for first in BIKES_MONTHS:
        month = (dates >= np.datetime64(first)) & (dates < np.datetime64(pack.interval_end(first)))
        repo.write_partition(first, rows[month])
    train(ws, repo.head(), dt.date(2011, 1, 1), BIKES_TRAINED_UNTIL, reason="shared fixture")
    return home


@pytest.fixture
def home_copy(tmp_path, trained_home):
    """A private copy of ``trained_home`` a test may change freely."""
    import shutil

    target = tmp_path / "home"
    shutil.copytree(trained_home, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def lifecycle_home(tmp_path_factory, trained_home, flights):
    """``trained_home`` after a lifecycle's stages, run through the core (no Airflow): v0001
    champion; a one-stump v0002 refused by the gate (run ``LIFECYCLE_RUN``); the drift report
    of 1-3 July (it crosses); one ingested interval (2013-07-04) and one quarantined file
    (2013-07-05); July 1-3's live quality (measured) and July 4-6's (pending). Read-only: copy
    it to change it."""
    import shutil

    from driftline.evaluation import run_gate
    from driftline.ingest import ingest_interval
    from driftline.landing import replay
    from driftline.monitoring import run_drift_report
    from driftline.outcomes import measure_live_quality
    from driftline.packs.timeline import iter_intervals
    from driftline.registry import Registry
    from driftline.training import train
    from driftline.validation import DataValidationError
    from driftline.versioning import DataRepo

    july = (dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    home = tmp_path_factory.mktemp("overview") / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    ws = workspace_at(home)
    registry = Registry(ws.registry_dir, ws.model_name)
    registry.set_alias("champion", "v0001", "first model")
    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(*july, "daily"):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])
    weak = train(ws, repo.head(), DATA_START, DATA_END, reason="one stump",
                 params={"num_boost_round": 1, "max_depth": 1})
    run_gate(ws.pack, registry.get(weak["version"]), registry.champion(), ws.gate,
             ws.reports_dir / "gates" / "flights_train" / LIFECYCLE_RUN,
             ws.monitor.column_drift_threshold)
    run_drift_report(ws, *july)
    replay(ws, dt.date(2013, 7, 4), dt.date(2013, 7, 4), source=flights)
    ingest_interval(ws, dt.date(2013, 7, 4))
    ws.landing_path(dt.date(2013, 7, 5)).write_text("not,the,flights,columns\n1,2,3,4\n")
    with pytest.raises(DataValidationError):
        ingest_interval(ws, dt.date(2013, 7, 5))
    measure_live_quality(ws, *july)
    measure_live_quality(ws, dt.date(2013, 7, 4), dt.date(2013, 7, 6))  # pending: no 5th, 6th
    return home
