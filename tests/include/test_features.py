import json

import numpy as np
import pandas as pd
import pytest
from driftline.features import (
    FEATURES,
    INPUT_COLUMNS,
    FeatureSchema,
    build_features,
    build_label,
    calendar_date_mask,
    day_of_week,
    derive_features,
    encode,
)


def test_features_from_raw_rows(flights):
    raw = flights.head(500)
    features = build_features(raw)
    assert list(features.columns) == FEATURES
    first = raw.iloc[0]
    assert features["sched_dep_hour"].iloc[0] == pytest.approx(
        first.sched_dep_time // 100 + (first.sched_dep_time % 100) / 60)
    assert features["day_of_week"].iloc[0] == 1.0  # 2013-01-01 was a Tuesday


def test_serving_rows_and_landing_rows_give_identical_features(flights):
    """One code path: JSON request rows (strings/None) == lake rows (typed frame)."""
    raw = flights.head(200)[INPUT_COLUMNS]
    from_request = pd.DataFrame(raw.to_dict(orient="records"))
    pd.testing.assert_frame_equal(build_features(raw), build_features(from_request))


def test_missing_input_column_is_named():
    with pytest.raises(KeyError, match="dest"):
        build_features(pd.DataFrame({c: [1] for c in INPUT_COLUMNS if c != "dest"}))


def test_label_is_late_over_15_minutes_and_unknown_when_cancelled():
    label = build_label(pd.DataFrame({"arr_delay": [15.0, 16.0, -3.0, np.nan]}))
    assert label.tolist()[:3] == [0.0, 1.0, 0.0] and np.isnan(label.iloc[3])


def test_unseen_category_encodes_as_missing_not_an_error(flights):
    features = build_features(flights.head(300))
    schema = FeatureSchema.fit(features)
    novel = features.head(2).copy()
    novel.loc[novel.index[0], "dest"] = "ZZZ"
    matrix = encode(novel, schema)
    dest = schema.features.index("dest")
    assert np.isnan(matrix[0, dest])
    assert matrix[1, dest] == schema.categories["dest"].index(novel["dest"].iloc[1])
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_day_of_week_and_calendar_check_agree_with_pandas():
    days = pd.date_range("1899-12-25", "2101-03-05", freq="D")
    year, month, day = (days.year.to_numpy(float), days.month.to_numpy(float),
                        days.day.to_numpy(float))
    np.testing.assert_array_equal(day_of_week(year, month, day), days.dayofweek.to_numpy(float))
    bad = np.array([[2013, 2, 29], [2012, 2, 30], [1900, 2, 29], [2013, 13, 1], [2013, 0, 5],
                    [2013, 4, 31], [2013, 1, 0], [2013, 1, 1.5], [np.nan, 1, 1]], dtype=float)
    assert not calendar_date_mask(*bad.T).any()
    assert np.isnan(day_of_week(*bad.T)).all()
    assert calendar_date_mask(np.array([2000.0, 2012.0]), np.array([2.0, 2.0]),
                              np.array([29.0, 29.0])).all()


def test_request_columns_give_the_same_matrix_as_the_lake_frame(flights):
    """The serving path (plain lists with None, one per column) and the training path
    (a typed frame) meet in derive_features and encode to the identical matrix."""
    raw = flights.head(400)[INPUT_COLUMNS]
    schema = FeatureSchema.fit(build_features(raw))
    records = json.loads(raw.to_json(orient="records"))
    columns = {c: [r[c] for r in records] for c in INPUT_COLUMNS}
    np.testing.assert_array_equal(encode(derive_features(columns), schema),
                                  encode(build_features(raw), schema))
