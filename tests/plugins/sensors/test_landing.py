"""LandingFileSensor pokes for the interval's landing file in the connection's workspace."""

from __future__ import annotations

import datetime as dt
import json

from tests.helpers import PACKS


def test_pokes_false_until_the_intervals_file_lands(monkeypatch, tmp_path):
    from airflow.models import Connection
    from driftline.workspace import open_workspace
    from driftline_provider.hooks.driftline import DriftlineHook
    from driftline_provider.sensors.landing import LandingFileSensor

    conn = Connection(conn_id="driftline_landing", conn_type="driftline",
                      extra=json.dumps({"home": str(tmp_path), "packs_dir": str(PACKS)}))
    monkeypatch.setenv("AIRFLOW_CONN_DRIFTLINE_LANDING", conn.as_json())
    sensor = LandingFileSensor(task_id="wait", pack="flights", start="2013-06-15",
                               driftline_conn_id="driftline_landing")
    assert sensor.mode == "reschedule"  # no worker slot held while waiting
    ws = open_workspace("flights", DriftlineHook("driftline_landing").get_settings())
    landing = ws.landing_path(dt.date(2013, 6, 15))
    assert landing.is_relative_to(tmp_path)
    assert sensor.poke({}) is False
    other_day = ws.landing_path(dt.date(2013, 6, 16))
    other_day.parent.mkdir(parents=True, exist_ok=True)
    other_day.write_bytes(b"x")
    assert sensor.poke({}) is False  # another interval's file does not count
    landing.write_bytes(b"x")
    assert sensor.poke({}) is True
