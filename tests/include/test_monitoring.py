import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from driftline.monitoring import (
    claim_report,
    drift_dir,
    find_unclaimed_crossing,
    list_drift_reports,
    run_drift_report,
)
from driftline.registry import Registry
from driftline.sources import iter_days
from driftline.versioning import DataRepo

from tests.helpers import settings_at


def test_no_champion_means_nothing_to_monitor(home_copy):
    with pytest.raises(LookupError, match="no champion"):
        run_drift_report(settings_at(home_copy), dt.date(2013, 1, 1), dt.date(2013, 1, 5))


def test_summer_drifts_from_a_winter_reference_and_winter_does_not(home_copy, flights):
    settings = settings_at(home_copy)
    Registry(settings.registry_dir, settings.model_name).set_alias("champion", "v0001", "t")
    repo = DataRepo(settings.data_repo, settings.dvc_remote)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_days(dt.date(2013, 7, 1), dt.date(2013, 7, 3)):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])

    winter = run_drift_report(settings, dt.date(2013, 1, 1), dt.date(2013, 1, 19))  # = training
    summer = run_drift_report(settings, dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    assert summer["share"] > winter["share"]
    assert summer["crossed"] and not winter["crossed"]
    assert {"temp", "dewp"} <= set(summer["datasets"]["lake"]["drifted"])
    assert (drift_dir(settings) / summer["report_id"] / "lake.html").exists()

    again = run_drift_report(settings, dt.date(2013, 7, 1), dt.date(2013, 7, 3))
    assert again["report_id"] == summer["report_id"]
    assert len(list_drift_reports(drift_dir(settings))) == 2  # rerun overwrote, not added


def test_a_crossing_report_can_be_claimed_exactly_once(tmp_path):
    report = tmp_path / "drift_2013-07-01_2013-07-31"
    report.mkdir()
    (report / "summary.json").write_text(json.dumps(
        {"report_id": report.name, "start": "2013-07-01", "end": "2013-07-31", "share": 0.7}))
    assert find_unclaimed_crossing(tmp_path, 0.5)["report_id"] == report.name
    assert find_unclaimed_crossing(tmp_path, 0.8) is None
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda i: claim_report(tmp_path, report.name, f"run{i}"),
                             range(8)))
    assert wins.count(True) == 1
    assert find_unclaimed_crossing(tmp_path, 0.5) is None
