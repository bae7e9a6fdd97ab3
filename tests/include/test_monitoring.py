import datetime as dt

import pytest
from driftline.monitoring import (
    drift_dir,
    list_drift_reports,
    run_drift_report,
)
from driftline.packs.timeline import iter_intervals
from driftline.registry import Registry
from driftline.versioning import DataRepo

from tests.helpers import workspace_at


def test_no_champion_means_nothing_to_monitor(home_copy):
    with pytest.raises(LookupError, match="no flights champion"):
        run_drift_report(workspace_at(home_copy), dt.date(2013, 1, 1), dt.date(2013, 1, 5))


def test_summer_drifts_from_a_winter_reference_and_winter_does_not(home_copy, flights):
    ws = workspace_at(home_copy)
    Registry(ws.registry_dir, ws.model_name).set_alias("champion", "v0001", "t")
    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(dt.date(2013, 7, 1), dt.date(2013, 7, 3), "daily"):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])

    winter = run_drift_report(ws, dt.date(2013, 1, 1), dt.date(2013, 1, 19))  # = training
    summer = run_drift_report(ws, dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    assert summer["share"] > winter["share"]
    assert ws.monitor.drift_share_threshold == 0.4
    assert summer["crossed"] and not winter["crossed"]
    lake = summer["datasets"]["lake"]
    assert {"temp", "dewp"} <= set(lake["drifted"])
    assert lake["rows"] == sum(len(flights[dates == (2013, 7, d)]) for d in (1, 2, 3))
    # Nothing was served: the share is the lake's, the drifted columns over all features.
    assert list(summer["datasets"]) == ["lake"]
    assert summer["share"] == lake["share"] == len(lake["drifted"]) / len(ws.pack.features)
    assert summer["pack"] == "flights" and summer["model_version"] == "v0001"
    assert drift_dir(ws) == home_copy / "reports" / "flights" / "drift"
    assert (drift_dir(ws) / summer["report_id"] / "lake.html").exists()

    again = run_drift_report(ws, dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    assert again["report_id"] == summer["report_id"] == "drift_2013-07-01_2013-07-03"
    assert len(list_drift_reports(drift_dir(ws))) == 2  # rerun overwrote, not added


