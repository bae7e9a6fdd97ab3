"""How sure a measured difference is: confidence intervals for the gate and the shadow check.

* :func:`paired_difference` -- candidate minus champion of a quality metric on the same rows:
  a seeded paired bootstrap (:func:`scipy.stats.bootstrap`, percentile interval; each
  resample draws the same rows for both models) and a two-sided bootstrap p-value for "no
  difference". The same rows and seed give the same interval on every rerun.
* :func:`share_interval` -- a share of rows (calls that differ): Wilson score interval.
* :func:`ratio_interval` -- the mean of one paired column over the mean of another (the
  shadow check's relative difference): the same seeded bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

SEED = 0
"""Seed of every bootstrap: reruns on the same rows give the same interval."""
RESAMPLES = 2000
"""Bootstrap resamples; the smallest p-value it can report is about ``2 / RESAMPLES``."""
BATCH = 50
"""Resamples evaluated together (bounds memory: ``BATCH`` x rows per array)."""
METHOD = f"paired bootstrap, {RESAMPLES} resamples, seed {SEED}"


def _auc(y, p, axis=-1):
    """ROC AUC along ``axis`` from average ranks (Mann-Whitney U; ties count one half)."""
    ranks = stats.rankdata(p, axis=axis)
    positives = y.sum(axis=axis)
    negatives = y.shape[axis] - positives
    u = (ranks * y).sum(axis=axis) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def _logloss(y, p, axis=-1):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=axis)


def _counts(y, p, axis):
    called = p >= 0.5
    return ((called & (y == 1)).sum(axis=axis), (called & (y == 0)).sum(axis=axis),
            (~called & (y == 1)).sum(axis=axis))


def _precision(y, p, axis=-1):
    tp, fp, _ = _counts(y, p, axis)
    return tp / (tp + fp)


def _recall(y, p, axis=-1):
    tp, _, fn = _counts(y, p, axis)
    return tp / (tp + fn)


def _f1(y, p, axis=-1):
    tp, fp, fn = _counts(y, p, axis)
    return 2 * tp / (2 * tp + fp + fn)


def _r2(y, p, axis=-1):
    residual = ((y - p) ** 2).sum(axis=axis)
    total = ((y - y.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis)
    return 1 - residual / total


METRICS = {
    "auc": _auc,
    "logloss": _logloss,
    "accuracy": lambda y, p, axis=-1: ((p >= 0.5) == (y == 1)).mean(axis=axis),
    "precision": _precision,
    "recall": _recall,
    "f1": _f1,
    "rmse": lambda y, p, axis=-1: np.sqrt(((y - p) ** 2).mean(axis=axis)),
    "mae": lambda y, p, axis=-1: np.abs(y - p).mean(axis=axis),
    "r2": _r2,
}
"""Each metric of a target and predictions (probabilities for binary packs), vectorised
along ``axis`` so a batch of resamples is one call."""


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus champion of ``metric`` on the same ``rows``, with its interval."""

    metric: str
    candidate: float
    champion: float
    difference: float
    low: float
    high: float
    confidence: float
    p_value: float
    """Two-sided bootstrap p-value for "no difference" (at least ``2 / RESAMPLES``)."""
    rows: int
    method: str = METHOD

    def describe(self) -> str:
        """One line: the difference, its interval, the p-value and the rows used."""
        return (f"candidate - champion {self.difference:+.4f}, {self.confidence:.0%} CI "
                f"[{self.low:+.4f}, {self.high:+.4f}], p = {self.p_value:.4f}, "
                f"{self.rows} rows ({self.method})")


def _bootstrap(data: tuple, statistic, confidence: float):
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.bootstrap(data, statistic, paired=True, vectorized=True,
                               confidence_level=confidence, n_resamples=RESAMPLES,
                               batch=BATCH, method="percentile", rng=SEED)


def paired_difference(metric: str, target, candidate, champion,
                      confidence: float = 0.95) -> PairedDifference:
    """Candidate minus champion of ``metric``, both predicting the same rows.

    :param metric: a key of :data:`METRICS`.
    :param target: the rows' labels (0/1 for binary packs) or values.
    :param candidate: the candidate's predictions (probabilities or values).
    :param champion: the champion's predictions of the same rows.
    :param confidence: the interval's confidence level.
    """
    score = METRICS[metric]
    y, ours, theirs = (np.asarray(a, dtype=float) for a in (target, candidate, champion))

    def difference(y, a, b, axis=-1):
        return score(y, a, axis=axis) - score(y, b, axis=axis)

    result = _bootstrap((y, ours, theirs), difference, confidence)
    spread = result.bootstrap_distribution
    spread = spread[np.isfinite(spread)]  # a resample without both classes has no AUC
    side = min((spread <= 0).sum(), (spread >= 0).sum())
    cand, champ = float(score(y, ours)), float(score(y, theirs))
    return PairedDifference(
        metric, cand, champ, cand - champ, float(result.confidence_interval.low),
        float(result.confidence_interval.high), confidence,
        float(min(1.0, 2 * (side + 1) / (spread.size + 1))), len(y))


def share_interval(count: int, rows: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the share ``count / rows``."""
    if rows == 0:
        return 0.0, 0.0
    ci = stats.binomtest(count, rows).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def ratio_interval(numerator, denominator,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(numerator) / mean(denominator)`` of paired rows and its bootstrap interval.

    :return: the ratio, the interval's low and high; all 0 where the denominator's mean is.
    """
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if a.size == 0 or b.mean() == 0:
        return 0.0, 0.0, 0.0
    if a.size == 1:
        ratio = float(a[0] / b[0])
        return ratio, ratio, ratio

    def ratio_of_means(a, b, axis=-1):
        return a.mean(axis=axis) / b.mean(axis=axis)

    ci = _bootstrap((a, b), ratio_of_means, confidence).confidence_interval
    return float(a.mean() / b.mean()), float(ci.low), float(ci.high)
