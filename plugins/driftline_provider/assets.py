"""The Assets driftline's DAGs produce and consume."""

from __future__ import annotations

from airflow.sdk import Asset

FLIGHTS = Asset(name="driftline_flights", uri="driftline://lake/flights",
                group="driftline")
"""A day's partition was ingested; extra: day, md5, rows, data_version."""

CHAMPION = Asset(name="driftline_champion", uri="driftline://registry/flight_delay/champion",
                 group="driftline")
"""A new model version went live; extra: version, slot, metrics."""

DRIFT_REPORTS = Asset(name="driftline_drift_reports", uri="driftline://reports/drift",
                      group="driftline")
"""A drift report was written; extra: report_id, share, threshold, crossed."""
