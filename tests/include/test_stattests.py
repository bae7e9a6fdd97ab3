"""driftline.stattests gives Evidently 0.7.23's DataDriftPreset verdicts: on real month pairs
of both shipped packs, each column gets the test Evidently picks, the same score, and the
same drifted columns and share as Evidently's own report of the same frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from driftline.drift import evidently_report, stattests_of, summarize_drift
from driftline.features import build_features
from driftline.packs import load_pack
from driftline.stattests import SMALL_SAMPLE, count_frame, frame_drift

from tests.helpers import PACKS

THRESHOLD = 0.3  # both packs' [monitor] column_drift_threshold
# Evidently's chi-square of a value that only the current side has divides by zero (p = 0)
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


@pytest.fixture(scope="module")
def frames():
    """Each pack with its features and each row's period (flights: month, day; bikes: month)."""
    out = {}
    for name in ("flights", "bikes"):
        pack = load_pack(PACKS / name)
        source = pack.load_source()
        features = build_features(pack, source)
        if name == "flights":
            features["period"] = source["month"].map("2013-{:02d}".format) + source[
                "day"].map("-{:02d}".format)
        else:
            features["period"] = source["datetime"].str[:7]
        out[name] = (pack, features)
    return out


def _rows(features: pd.DataFrame, periods: tuple[str, ...]) -> pd.DataFrame:
    return features[features["period"].str.startswith(periods)]


# (pack, current periods, reference periods, whether some column drifts, tests expected)
PAIRS = [
    ("flights", ("2013-02",), ("2013-01",), True, {"wasserstein", "jensenshannon"}),
    ("flights", ("2013-07",), ("2013-01",), True, {"wasserstein", "jensenshannon"}),
    ("flights", ("2013-10",), ("2013-05",), False, {"wasserstein", "jensenshannon"}),
    # one day each: at most 1,000 rows, so Evidently's small-sample tests; day_of_week is a
    # numerical column with one value per side (the z-test)
    ("flights", ("2013-07-04",), ("2013-01-02",), True, {"ks", "chisquare", "z"}),
    # one month of bikes is 649..744 hours: the small-sample tests again
    ("bikes", ("2011-02",), ("2011-01",), True, {"ks", "chisquare", "z"}),
    ("bikes", ("2011-07",), ("2011-01",), True, {"ks", "chisquare", "z"}),
    ("bikes", ("2011-07",), ("2011-01", "2011-02", "2011-03", "2011-04", "2011-05", "2011-06"),
     True, {"wasserstein", "jensenshannon"}),
    ("bikes", ("2012-07",), ("2011-07", "2011-08"), False, {"wasserstein", "jensenshannon"}),
]


@pytest.mark.parametrize(("name", "current", "reference", "drifts", "tests"), PAIRS,
                         ids=[f"{p[0]}-{p[1][0]}-vs-{p[2][0]}..{p[2][-1]}" for p in PAIRS])
def test_scores_and_verdicts_equal_evidentlys(frames, name, current, reference, drifts, tests):
    from evidently.legacy.calculations import stattests as evidently_stattests

    display_names = {t.name: t.display_name for t in (
        evidently_stattests.wasserstein_stat_test, evidently_stattests.jensenshannon_stat_test,
        evidently_stattests.ks_stat_test, evidently_stattests.chi_stat_test,
        evidently_stattests.z_stat_test)}
    pack, features = frames[name]
    cur, ref = _rows(features, current), _rows(features, reference)
    expected_report = evidently_report(pack, cur, ref, THRESHOLD).dict()
    expected = summarize_drift(expected_report)
    evidently_tests = stattests_of(expected_report)

    counts = {side: count_frame(frame, pack.numeric_features, pack.categorical_features)
              for side, frame in (("cur", cur), ("ref", ref))}
    verdicts = frame_drift(counts["cur"], counts["ref"], THRESHOLD)

    assert list(verdicts) == pack.features
    for column, verdict in verdicts.items():
        assert display_names[verdict.stattest] == evidently_tests[column], column
        score = expected["columns"][column]
        if verdict.stattest in ("ks", "z"):  # the same scipy call on the same samples
            assert verdict.score == score, column
        else:  # sums over values in another order
            assert math.isclose(verdict.score, score, rel_tol=1e-9, abs_tol=1e-12), column
    drifted = [c for c, v in verdicts.items() if v.drifted]
    assert drifted == expected["drifted"]
    assert len(drifted) == expected["count"]
    assert len(drifted) / len(verdicts) == expected["share"]
    assert bool(drifted) == drifts
    assert {v.stattest for v in verdicts.values()} == tests
    small = all(c.n <= SMALL_SAMPLE for c in counts["ref"].values())
    assert small == ("ks" in tests)


def test_counts_drop_missing_values_as_evidently_does(frames):
    features = frames["flights"][1]
    january = _rows(features, ("2013-01",))
    counts = count_frame(january, ["wind_gust"], ["carrier"])
    assert counts["wind_gust"].n == january["wind_gust"].notna().sum() < len(january)
    assert np.all(np.diff(counts["wind_gust"].values) > 0)  # distinct and ascending
    assert counts["carrier"].as_dict() == january["carrier"].value_counts().to_dict()
    assert counts["wind_gust"].std() == pytest.approx(np.std(january["wind_gust"].dropna()),
                                                      rel=1e-12)
