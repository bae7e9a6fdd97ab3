"""The postgres-celery tier's services (``scripts/services.py``) and the tier switch
(``scripts/airflow_stack.py``): a real PostgreSQL 15 and a real Redis, started in a home,
reachable with their passwords only, on loopback only, stopped with nothing left; the
cluster and its data survive a restart."""

from __future__ import annotations

import json
import stat
import sys

import pytest

from tests.helpers import LOOPBACK, ROOT, group_pids, listening_sockets

sys.path.insert(0, str(ROOT / "scripts"))
from airflow_stack import airflow_env, components, recorded_tier
from services import running_services, start_services, stop_services


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "airflow"
    yield home
    stop_services(home)


@pytest.mark.postgres
@pytest.mark.redis
def test_services_listen_on_loopback_with_passwords_and_keep_their_data(home):
    import psycopg2
    import redis

    services = start_services(home)
    assert set(running_services(home)) == {"postgres", "redis"}
    listening = listening_sockets(group_pids(list(running_services(home).values())))
    assert {a for a, _ in listening} <= LOOPBACK, listening
    assert {p for _, p in listening} == {services.postgres_port, services.redis_port}
    assert stat.S_IMODE((home / "services.json").stat().st_mode) == 0o600
    assert json.loads((home / "services.json").read_text())["redis_password"] == \
        services.redis_password

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=services.postgres_port, user="airflow",
                         password="wrong", dbname="airflow")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=services.redis_port, password="wrong").ping()
    with pytest.raises(redis.AuthenticationError):  # no password at all: refused too
        redis.Redis(port=services.redis_port).set("k", "v")
    assert redis.Redis(port=services.redis_port, password=services.redis_password).ping()
    with psycopg2.connect(services.sql_alchemy_conn.replace("+psycopg2", "")) as conn, \
            conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")

    stop_services(home)
    assert running_services(home) == {}
    again = start_services(home)
    assert again.postgres_password == services.postgres_password
    with psycopg2.connect(again.sql_alchemy_conn.replace("+psycopg2", "")) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT n FROM kept")
        assert cur.fetchall() == [(7,)]


def test_the_tier_switch_sets_executor_database_and_broker(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTLINE_TIER", raising=False)
    default = airflow_env(ROOT, tmp_path / "a", tmp_path / "d")
    assert (default["DRIFTLINE_TIER"], default["AIRFLOW__CORE__EXECUTOR"]) == \
        ("sqlite", "LocalExecutor")
    assert not (tmp_path / "a" / "services.json").exists()  # SQLite needs no services

    monkeypatch.setenv("DRIFTLINE_TIER", "postgres-celery")
    env = airflow_env(ROOT, tmp_path / "a", tmp_path / "d")
    services = json.loads((tmp_path / "a" / "services.json").read_text())
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://airflow:{services['postgres_password']}@127.0.0.1:"
        f"{services['postgres_port']}/airflow")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == (
        f"redis://:{services['redis_password']}@127.0.0.1:{services['redis_port']}/0")
    workers = [name for name in components("postgres-celery") if "celery" in name]
    assert len(workers) == 2 and not any("celery" in n for n in components("sqlite"))
    assert recorded_tier(tmp_path / "a") is None  # recorded only when a stack starts

    monkeypatch.setenv("DRIFTLINE_TIER", "mysql")
    with pytest.raises(ValueError, match="DRIFTLINE_TIER='mysql': expected one of sqlite, "
                                         "postgres-celery"):
        airflow_env(ROOT, tmp_path / "a", tmp_path / "d")
