import numpy as np
import pandas as pd
import pytest
from driftline.features import (
    FEATURES,
    INPUT_COLUMNS,
    FeatureSchema,
    build_features,
    build_label,
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
