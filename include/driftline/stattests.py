"""Evidently 0.7.23's per-column data drift tests, computed from value counts.

``DataDriftPreset`` picks one test per column by its type and size
(``evidently.legacy.calculations.stattests.registry._get_default_stattest``) and runs it on
the column without NaN and infinities. Every test it picks for a numerical or categorical
column depends only on the column's distinct values and their counts, so a column is
counted once (a hash table, no sort of the rows) and the test runs on the counts, calling
the same scipy function Evidently calls:

========================  =============================  ==================================
reference values          numerical                      categorical
========================  =============================  ==================================
more than 1,000           > 5 distinct: ``wasserstein``  ``jensenshannon``
                          (distance / max(std, 0.001));
                          <= 5: ``jensenshannon``
1,000 or fewer            > 5 distinct: ``ks`` p-value;  > 2 distinct: ``chisquare``;
                          3-5: ``chisquare``; <= 2: ``z``  <= 2: ``z`` (p-values)
========================  =============================  ==================================

"distinct" counts both sides together. Anything else raises :class:`NotReproduced`, and
the caller runs Evidently itself: infinite values (Evidently's per-column and dataset-level
metrics drop them differently), and dtypes other than int/float (numerical) or object
(categorical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

NUMERICAL, CATEGORICAL = "num", "cat"
SMALL_SAMPLE = 1000
"""Evidently's cut: a reference of at most this many values gets the p-value tests."""

DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "ks": 0.05,
                      "chisquare": 0.05, "z": 0.05}
"""Evidently's default threshold of each test, used when none is given."""


class NotReproduced(ValueError):
    """A column this module does not reproduce exactly: run Evidently instead."""


@dataclass(frozen=True)
class ColumnCounts:
    """The distinct non-missing values of one column and how often each occurs."""

    kind: str
    values: np.ndarray
    """numerical: float64, ascending; categorical: objects in first-seen order."""
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def as_dict(self) -> dict:
        return dict(zip(self.values.tolist(), self.counts.tolist(), strict=True))

    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std`` of the rows)."""
        mean = float(np.dot(self.values, self.counts)) / self.n
        return float(np.sqrt(np.dot(self.counts, (self.values - mean) ** 2) / self.n))


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift verdict, as Evidently would give it."""

    stattest: str
    """Evidently's registered name of the test (``wasserstein``, ``ks``, ...)."""
    score: float
    threshold: float
    drifted: bool


def count_column(values: pd.Series, kind: str) -> ColumnCounts:
    """The value counts of one column, NaN/None dropped as Evidently drops them.

    :param kind: :data:`NUMERICAL` or :data:`CATEGORICAL`.
    :raises NotReproduced: the column has infinities or a dtype this module does not handle.
    """
    name = values.name
    if kind == NUMERICAL:
        if values.dtype.kind not in "iuf":
            raise NotReproduced(f"numerical column {name!r} has dtype {values.dtype}")
        array = values.to_numpy(dtype=np.float64)
        if np.isinf(array).any():
            raise NotReproduced(f"numerical column {name!r} has infinite values")
        counted = pd.Series(array, copy=False).value_counts(sort=False).sort_index()
        return ColumnCounts(kind, counted.index.to_numpy(dtype=np.float64),
                            counted.to_numpy(dtype=np.int64))
    if values.dtype != object:
        raise NotReproduced(f"categorical column {name!r} has dtype {values.dtype}")
    counted = values.value_counts(sort=False)
    return ColumnCounts(kind, counted.index.to_numpy(dtype=object),
                        counted.to_numpy(dtype=np.int64))


def count_frame(frame: pd.DataFrame, numerical: Sequence[str],
                categorical: Sequence[str]) -> dict[str, ColumnCounts]:
    """:func:`count_column` of each named column of ``frame`` (computed once, reusable)."""
    return {**{c: count_column(frame[c], NUMERICAL) for c in numerical},
            **{c: count_column(frame[c], CATEGORICAL) for c in categorical}}


def choose_stattest(current: ColumnCounts, reference: ColumnCounts) -> str:
    """The test Evidently's default selection picks for this column."""
    distinct = len(set(reference.values.tolist()) | set(current.values.tolist()))
    if reference.n <= SMALL_SAMPLE:
        if current.kind == NUMERICAL and distinct > 5:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if current.kind == NUMERICAL and distinct > 5:
        return "wasserstein"
    return "jensenshannon"


def _aligned(current: ColumnCounts, reference: ColumnCounts) -> tuple[np.ndarray, np.ndarray]:
    """Counts of current and reference over the union of their values."""
    cur, ref = current.as_dict(), reference.as_dict()
    keys = list({**ref, **cur})
    return (np.array([cur.get(k, 0) for k in keys], dtype=np.float64),
            np.array([ref.get(k, 0) for k in keys], dtype=np.float64))


def _wasserstein(current: ColumnCounts, reference: ColumnCounts) -> float:
    norm = max(reference.std(), 0.001)
    return float(stats.wasserstein_distance(reference.values, current.values,
                                            reference.counts, current.counts)) / norm


def _jensenshannon(current: ColumnCounts, reference: ColumnCounts) -> float:
    cur, ref = _aligned(current, reference)
    return float(distance.jensenshannon(ref / reference.n, cur / current.n))


def _ks(current: ColumnCounts, reference: ColumnCounts) -> float:
    # The K-S statistic and p-value depend only on the sorted samples: rebuild them.
    return float(stats.ks_2samp(np.repeat(reference.values, reference.counts),
                                np.repeat(current.values, current.counts))[1])


def _chisquare(current: ColumnCounts, reference: ColumnCounts) -> float:
    cur, ref = _aligned(current, reference)
    with np.errstate(divide="ignore", invalid="ignore"):  # a value new in current: p = 0
        return float(stats.chisquare(cur, ref * (current.n / reference.n))[1])


def _z(current: ColumnCounts, reference: ColumnCounts) -> float:
    """Two-proportion z-test of "not the smallest value" (Evidently's ``_z_stat_test``)."""
    if len(current.values) == len(reference.values) == 1 and (
            current.values[0] == reference.values[0]):
        return 1.0
    first = sorted(set(reference.values.tolist()) | set(current.values.tolist()))[0]
    n1, n2 = reference.n, current.n
    p1 = float(n1 - reference.as_dict().get(first, 0)) / n1
    p2 = float(n2 - current.as_dict().get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


_SCORES = {"wasserstein": _wasserstein, "jensenshannon": _jensenshannon, "ks": _ks,
           "chisquare": _chisquare, "z": _z}


def column_drift(current: ColumnCounts, reference: ColumnCounts,
                 threshold: float | None = None) -> ColumnDrift:
    """Evidently's default drift test of one column, from its counts.

    :param threshold: the column's threshold; ``None``: the test's Evidently default.
    """
    name = choose_stattest(current, reference)
    limit = DEFAULT_THRESHOLDS[name] if threshold is None else threshold
    score = _SCORES[name](current, reference)
    if name in ("wasserstein", "jensenshannon"):
        drifted = score >= limit
    else:  # p-values: K-S drifts at p <= threshold, chi-square and z below it
        drifted = score <= limit if name == "ks" else score < limit
    return ColumnDrift(name, score, limit, bool(drifted))


def frame_drift(current: dict[str, ColumnCounts], reference: dict[str, ColumnCounts],
                threshold: float | None = None) -> dict[str, ColumnDrift]:
    """:func:`column_drift` of every column of ``reference``, in its order.

    :raises ValueError: a column has no value on one side (Evidently's message).
    """
    for column in reference:
        for side, counts in (("reference", reference), ("current", current)):
            if counts[column].n == 0:
                raise ValueError(f"An empty column '{column}' was provided for drift "
                                 f"calculation in the {side} dataset.")
    return {c: column_drift(current[c], reference[c], threshold) for c in reference}
