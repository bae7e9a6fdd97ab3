import json

import numpy as np
import pandas as pd
import pytest
from driftline.features import (
    FeatureSchema,
    build_features,
    build_label,
    derive_features,
    encode,
)


def test_features_from_raw_rows(flights_pack, flights):
    raw = flights.head(500)
    features = build_features(flights_pack, raw)
    assert list(features.columns) == flights_pack.features
    assert flights_pack.features[-3:] == ["carrier", "origin", "dest"]
    # Expected values computed another way: plain integer arithmetic and pandas' calendar.
    hours = [t // 100 + (t % 100) / 60 for t in raw["sched_dep_time"].tolist()]
    np.testing.assert_allclose(features["sched_dep_hour"], hours, rtol=0, atol=1e-12)
    weekday = pd.to_datetime(raw[["year", "month", "day"]]).dt.dayofweek.to_numpy(float)
    np.testing.assert_array_equal(features["day_of_week"], weekday)
    assert features["day_of_week"].iloc[0] == 1.0  # 2013-01-01 was a Tuesday
    pd.testing.assert_series_equal(features["distance"], raw["distance"].astype(float))
    assert features["dest"].tolist() == raw["dest"].tolist()


def test_serving_rows_and_landing_rows_give_identical_features(flights_pack, flights):
    """One code path: JSON request rows (strings/None) == lake rows (typed frame)."""
    raw = flights.head(200)[flights_pack.inputs]
    from_request = pd.DataFrame(raw.to_dict(orient="records"))
    pd.testing.assert_frame_equal(build_features(flights_pack, raw),
                                  build_features(flights_pack, from_request))


def test_missing_input_column_is_named(flights_pack):
    with pytest.raises(KeyError, match="dest"):
        build_features(flights_pack, pd.DataFrame({c: [1] for c in flights_pack.inputs
                                                   if c != "dest"}))


def test_label_is_late_over_15_minutes_and_unknown_when_cancelled(flights_pack):
    label = build_label(flights_pack, pd.DataFrame({"arr_delay": [15.0, 16.0, -3.0, np.nan]}))
    assert label.tolist()[:3] == [0.0, 1.0, 0.0] and np.isnan(label.iloc[3])


def test_unseen_category_encodes_as_missing_not_an_error(flights_pack, flights):
    features = build_features(flights_pack, flights.head(300))
    schema = FeatureSchema.fit(flights_pack, features)
    assert schema.categories["origin"] == ["EWR", "JFK", "LGA"]
    vocabulary = sorted(set(flights.head(300)["dest"]))  # the raw rows' airports, sorted
    assert schema.categories["dest"] == vocabulary
    novel = features.head(2).copy()
    novel.loc[novel.index[0], "dest"] = "ZZZ"
    matrix = encode(novel, schema)
    dest = schema.features.index("dest")
    assert np.isnan(matrix[0, dest])
    assert matrix[1, dest] == vocabulary.index(flights["dest"].iloc[1])
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_request_columns_give_the_same_matrix_as_the_lake_frame(flights_pack, flights):
    """The serving path (plain lists with None, one per column) and the training path
    (a typed frame) meet in derive_features and encode to the identical matrix."""
    raw = flights.head(400)[flights_pack.inputs]
    schema = FeatureSchema.fit(flights_pack, build_features(flights_pack, raw))
    records = json.loads(raw.to_json(orient="records"))
    columns = {c: [r[c] for r in records] for c in flights_pack.inputs}
    np.testing.assert_array_equal(encode(derive_features(flights_pack, columns), schema),
                                  encode(build_features(flights_pack, raw), schema))


def test_missing_and_malformed_request_values_become_missing_features(flights_pack, flights):
    """A null or non-numeric input is NaN (XGBoost's missing), never an exception; a null
    category is None and encodes as missing."""
    row = flights.head(1)[flights_pack.inputs].to_dict(orient="records")[0]
    columns = {c: [row[c], row[c]] for c in flights_pack.inputs}
    columns["temp"] = [None, "warm"]
    columns["day"] = [None, row["day"]]
    columns["carrier"] = [None, row["carrier"]]
    features = derive_features(flights_pack, columns)
    assert np.isnan(features["temp"]).all()
    assert np.isnan(features["day_of_week"][0]) and features["day_of_week"][1] == 1.0
    assert features["carrier"].tolist() == [None, row["carrier"]]
    schema = FeatureSchema(features=flights_pack.features,
                           categories={"carrier": [row["carrier"]], "origin": [], "dest": []})
    assert np.isnan(encode(features, schema)[0, flights_pack.features.index("carrier")])
