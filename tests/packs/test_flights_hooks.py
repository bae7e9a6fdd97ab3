"""The flights pack's hooks: pure functions, checked against pandas' calendar."""

import numpy as np
import pandas as pd


def test_day_of_week_and_calendar_check_agree_with_pandas(flights_pack):
    hooks = flights_pack.hooks
    days = pd.date_range("1899-12-25", "2101-03-05", freq="D")
    year, month, day = (days.year.to_numpy(float), days.month.to_numpy(float),
                        days.day.to_numpy(float))
    np.testing.assert_array_equal(hooks.day_of_week(year, month, day),
                                  days.dayofweek.to_numpy(float))
    assert hooks.calendar_date_mask(year, month, day).all()
    bad = np.array([[2013, 2, 29], [2012, 2, 30], [1900, 2, 29], [2013, 13, 1], [2013, 0, 5],
                    [2013, 4, 31], [2013, 1, 0], [2013, 1, 1.5], [np.nan, 1, 1]], dtype=float)
    assert not hooks.calendar_date_mask(*bad.T).any()
    assert np.isnan(hooks.day_of_week(*bad.T)).all()
    assert hooks.calendar_date_mask(np.array([2000.0, 2012.0]), np.array([2.0, 2.0]),
                                    np.array([29.0, 29.0])).all()


def test_clock_times_become_fractional_hours(flights_pack):
    hooks = flights_pack.hooks
    clock = np.array([0.0, 59.0, 1435.0, 2359.0, np.nan])
    expected = np.array([0.0, 59 / 60, 14 + 35 / 60, 23 + 59 / 60, np.nan])
    np.testing.assert_allclose(hooks.clock_to_hours(clock), expected, rtol=0, atol=1e-12)


def test_derive_returns_every_derived_feature_of_the_spec(flights_pack):
    columns = {"sched_dep_time": np.array([530.0]), "sched_arr_time": np.array([1945.0]),
               "year": np.array([2013.0]), "month": np.array([7.0]), "day": np.array([4.0])}
    derived = flights_pack.hooks.derive(columns)
    assert set(derived) == set(flights_pack.derived_features)
    assert derived["sched_dep_hour"][0] == 5.5
    assert derived["sched_arr_hour"][0] == 19.75
    assert derived["day_of_week"][0] == 3.0  # 4 July 2013 was a Thursday
