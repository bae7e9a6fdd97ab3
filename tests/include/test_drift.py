"""feature_drift: the figures on all rows from driftline.stattests, the HTML report by
Evidently on a fixed-seed sample, and Evidently itself for a comparison it does not
reproduce; on real flights months."""

from __future__ import annotations

import json

import numpy as np
import pytest
from driftline.drift import (
    HTML_SAMPLE_ROWS,
    evidently_report,
    feature_drift,
    html_sample,
    summarize_drift,
)
from driftline.features import build_features

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


@pytest.fixture(scope="module")
def months(flights_pack, flights):
    """January and July 2013 flights' features (27,004 and 29,425 rows)."""
    features = build_features(flights_pack, flights)
    return (features[flights["month"].to_numpy() == 1],
            features[flights["month"].to_numpy() == 7])


def test_figures_are_evidentlys_on_all_rows_and_the_html_is_on_a_sample(
        flights_pack, months, tmp_path):
    january, july = months
    drift = feature_drift(flights_pack, july, january, 0.3, tmp_path / "d.html",
                          tmp_path / "d.json")

    expected = summarize_drift(evidently_report(flights_pack, july, january, 0.3).dict())
    assert drift["drifted"] == expected["drifted"] == [
        "temp", "dewp", "humid", "wind_dir", "wind_gust", "pressure", "visib"]
    assert (drift["share"], drift["count"]) == (expected["share"], expected["count"]) == (
        7 / 16, 7)
    assert drift["columns"] == pytest.approx(expected["columns"], rel=1e-9)
    assert set(drift) == {"share", "count", "columns", "drifted"}

    written = json.loads((tmp_path / "d.json").read_text())
    assert written["engine"] == "driftline.stattests"
    assert {k: written[k] for k in drift} == drift
    assert written["rows"] == {"current": len(july), "reference": len(january)}
    assert written["stattests"] == {**dict.fromkeys(flights_pack.numeric_features,
                                                    "wasserstein"),
                                    **dict.fromkeys(flights_pack.categorical_features,
                                                    "jensenshannon")}
    assert written["html"]["rows"] == {"current": HTML_SAMPLE_ROWS,
                                       "reference": HTML_SAMPLE_ROWS}
    assert "sample" in written["html"]["note"] and "all rows" in written["html"]["note"]
    html = (tmp_path / "d.html").read_text()
    assert all(f'"column_name": "{c}"' in html for c in flights_pack.features)


def test_the_html_sample_is_fixed_in_order_and_whole_frames_below_its_size(months):
    january, _ = months
    sample = html_sample(january)
    assert len(sample) == HTML_SAMPLE_ROWS and sample.index.is_monotonic_increasing
    assert sample.index.is_unique and sample.index.isin(january.index).all()
    assert sample.index.equals(html_sample(january).index)
    assert not sample.index.equals(html_sample(january, seed=1).index)
    assert html_sample(january.iloc[:500]).index.equals(january.index[:500])


def test_a_column_it_does_not_reproduce_makes_evidently_compute_the_figures(
        flights_pack, months, tmp_path):
    january, july = months
    july = july.copy()
    july.iloc[:10, july.columns.get_loc("temp")] = np.inf  # a broken sensor, say
    drift = feature_drift(flights_pack, july, january, 0.3, json_path=tmp_path / "d.json")

    assert drift == summarize_drift(evidently_report(flights_pack, july, january, 0.3).dict())
    written = json.loads((tmp_path / "d.json").read_text())
    assert written["engine"] == "evidently"
    assert "'temp' has infinite values" in written["fallback_reason"]
    assert written["stattests"]["temp"] == "Wasserstein distance (normed)"


def test_a_column_without_any_value_fails_as_evidently_does(flights_pack, months):
    january, july = months
    july = july.assign(wind_gust=np.nan)
    with pytest.raises(ValueError, match="An empty column 'wind_gust' was provided for drift "
                                         "calculation in the current dataset") as evidently:
        evidently_report(flights_pack, july, january, 0.3)
    with pytest.raises(ValueError) as driftline:
        feature_drift(flights_pack, july, january, 0.3)
    assert str(driftline.value) == str(evidently.value)
