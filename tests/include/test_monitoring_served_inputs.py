"""The monitor compares the inputs the model server logged for the interval, not only the
lake's partitions, with the live model's reference (the path ``make demo`` relies on: it
sends each month's traffic through the router before monitoring it). Rows are served by the
real model server app, which writes the prediction log; the monitor reads that log back."""

from __future__ import annotations

import datetime as dt
import warnings

import pandas as pd
import pytest
from driftline.monitoring import MIN_ROWS, run_drift_report
from driftline.registry import Registry
from driftline.scoring import request_rows
from driftline.serving.app import create_app

from tests.helpers import workspace_at

with warnings.catch_warnings():  # starlette's notice that httpx2 is preferred
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TRAINING = (dt.date(2013, 1, 1), dt.date(2013, 1, 19))  # v0001's training days, in the lake
LATE_JANUARY = (dt.date(2013, 1, 20), dt.date(2013, 1, 24))  # v0001's holdout, in the lake
# A client that sends metric units: the lake keeps NOAA's, the model learned those.
METRIC = {"temp": lambda f: (f - 32) * 5 / 9, "dewp": lambda f: (f - 32) * 5 / 9,
          "wind_speed": lambda mph: mph * 1.609344, "wind_gust": lambda mph: mph * 1.609344,
          "visib": lambda mi: mi * 1.609344, "pressure": lambda mbar: mbar * 0.1,
          "precip": lambda inch: inch * 25.4}


@pytest.fixture
def ws(home_copy):
    """The flights workspace of a private home, v0001 live (the champion)."""
    ws = workspace_at(home_copy)
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "test")
    return ws


def days(flights: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The flights of the local days ``start..end`` (the lake's partitions of them)."""
    day = pd.to_datetime(flights[["year", "month", "day"]]).dt.date
    return flights[(day >= start) & (day <= end)]


def serve(ws, rows: pd.DataFrame) -> None:
    """POST ``rows`` to the model server app, 500 a request; leaving it drains the log."""
    version = Registry(ws.registry_dir, ws.model_name).get("v0001")
    records = request_rows(ws.pack, rows)
    with TestClient(create_app(version, "blue", ws)) as client:
        for i in range(0, len(records), 500):
            response = client.post("/predict", json={"rows": records[i:i + 500]})
            assert response.status_code == 200, response.text
            assert len(response.json()["predictions"]) == len(records[i:i + 500])


def test_served_inputs_in_other_units_drift_while_the_lake_does_not(ws, flights):
    """Every training-day flight served, seven weather inputs in metric units: the lake of
    those days is v0001's own training data and stays below the threshold; the served inputs
    drift in exactly those seven columns more, and the report's share is theirs."""
    rows = days(flights, *TRAINING)
    skewed = rows.assign(**{c: convert(rows[c]) for c, convert in METRIC.items()})
    serve(ws, skewed)

    summary = run_drift_report(ws, *TRAINING)
    lake, served = summary["datasets"]["lake"], summary["datasets"]["served"]
    assert lake["rows"] == served["rows"] == len(rows)
    features = len(ws.pack.features)
    assert lake["share"] == len(lake["drifted"]) / features < summary["threshold"] == 0.4
    # unchanged columns are the very same values as the lake's: they drift exactly as there
    assert sorted(served["drifted"]) == sorted(set(lake["drifted"]) | set(METRIC))
    assert served["share"] == len(served["drifted"]) / features
    assert summary["share"] == served["share"] > summary["threshold"]
    assert summary["crossed"] is True
    assert {"served.html", "served.json", "lake.html"} <= {
        p.name for p in (ws.reports_dir / "drift" / summary["report_id"]).iterdir()}


def test_only_the_intervals_served_rows_count_and_fewer_than_200_are_not_compared(ws,
                                                                                    flights):
    assert MIN_ROWS == 200
    inside = days(flights, *LATE_JANUARY)
    after = days(flights, dt.date(2013, 1, 25), dt.date(2013, 1, 25))
    assert len(inside) > 1000 and len(after) > MIN_ROWS
    serve(ws, pd.concat([inside.iloc[:MIN_ROWS - 1], after]))  # 199 rows in the interval
    below = run_drift_report(ws, *LATE_JANUARY)
    assert list(below["datasets"]) == ["lake"]
    assert below["share"] == below["datasets"]["lake"]["share"]
    assert below["datasets"]["lake"]["rows"] == len(inside)

    serve(ws, inside.iloc[MIN_ROWS - 1:MIN_ROWS])  # the 200th
    at = run_drift_report(ws, *LATE_JANUARY)
    assert list(at["datasets"]) == ["lake", "served"]
    assert at["datasets"]["served"]["rows"] == MIN_ROWS
    assert at["share"] == max(at["datasets"]["lake"]["share"],
                              at["datasets"]["served"]["share"])
