"""The test session's Airflow is the session's own: its home and metadata database are the
ones tests/conftest.py set, not ~/airflow (a plugin or an ini option that imports Airflow
before conftest.py runs would silently point every test at another database)."""

from __future__ import annotations

import os

from tests.helpers import SESSION


def test_airflow_uses_the_sessions_home_and_database():
    from airflow import settings
    from airflow.configuration import AIRFLOW_HOME

    assert str(SESSION / "airflow") == AIRFLOW_HOME
    assert f"sqlite:///{SESSION}/airflow/airflow.db" == settings.SQL_ALCHEMY_CONN
    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == settings.SQL_ALCHEMY_CONN


def test_airflow_keeps_its_login_file_in_the_session():
    from airflow.configuration import conf

    assert conf.get("core", "simple_auth_manager_passwords_file") == str(
        SESSION / "airflow" / "passwords.json")
