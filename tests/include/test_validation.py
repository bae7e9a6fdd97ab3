import datetime as dt

import numpy as np
from driftline.settings import ValidationSettings
from driftline.sources import landing_path, read_landing_file, replay
from driftline.validation import validate_landing_frame


def _day(tmp_path):
    replay(tmp_path, dt.date(2013, 3, 5), dt.date(2013, 3, 5))
    return read_landing_file(landing_path(tmp_path, dt.date(2013, 3, 5)))


def test_a_real_day_passes_every_check(tmp_path):
    result = validate_landing_frame(_day(tmp_path), "flights_2013-03-05.csv")
    assert result.passed, [c.describe() for c in result.failures]
    assert len(result.checks) > 30


def test_missing_column_fails_naming_it(tmp_path):
    result = validate_landing_frame(_day(tmp_path).drop(columns=["dest"]), "f.csv")
    assert not result.passed
    assert [(c.name, c.column) for c in result.failures] == [("required column present", "dest")]


def test_wrong_type_fails_naming_column_and_type(tmp_path):
    frame = _day(tmp_path)
    frame["distance"] = "far"
    (failure,) = validate_landing_frame(frame, "f.csv").failures
    assert (failure.name, failure.column, failure.threshold) == ("column type", "distance",
                                                                 "numeric")


def test_null_share_over_limit_fails_with_measured_share(tmp_path):
    frame = _day(tmp_path)
    frame.loc[frame.index[:100], "carrier"] = np.nan
    failures = validate_landing_frame(frame, "f.csv").failures
    assert [(c.name, c.column) for c in failures] == [("null share", "carrier")]
    assert failures[0].value == round(100 / len(frame), 6)
    assert failures[0].threshold == 0.0


def test_out_of_range_values_fail_over_the_allowed_share(tmp_path):
    frame = _day(tmp_path)
    frame.loc[frame.index[:20], "humid"] = 250.0
    result = validate_landing_frame(frame, "f.csv", ValidationSettings())
    (failure,) = result.failures
    assert failure.column == "humid" and failure.name.startswith("out-of-range share")
    assert "measured" in failure.describe() and "limit 0.005" in failure.describe()


def test_too_few_rows_fails(tmp_path):
    result = validate_landing_frame(_day(tmp_path).head(10), "f.csv")
    assert ("row count", 10.0) in [(c.name, c.value) for c in result.failures]
