"""Checks a candidate must pass before (and right after) it takes live traffic.

Both serving backends use these, each with its own way of reaching a slot: a ``predict``
callable takes raw rows and returns the ``/predict`` response body, raising
:class:`DeployError` when the request fails.

* :func:`smoke_check` -- the rows recorded at training must get the recorded predictions.
* :func:`shadow_compare` -- recent served rows, sent to the candidate and to the live slot:
  binary packs, the share whose call differs; regression packs, the mean absolute difference
  relative to the live slot's mean absolute prediction. Each with a confidence interval: the
  candidate is refused when the interval's lower bound is over the limit, so a few hundred
  rows neither refuse a retrain by chance nor let a clearly different model through.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from driftline.packs import Pack
from driftline.registry import ModelVersion
from driftline.serving.paths import predictions_dir
from driftline.serving.schema import prediction_key
from driftline.settings import ServingSettings
from driftline.significance import ratio_interval, share_interval

log = logging.getLogger(__name__)

SMOKE_TOLERANCE = 1e-6
VERIFY_HEADER = "x-driftline-verify"
"""Header on verification requests (smoke, shadow, watch): servers do not log them."""
Predict = Callable[[list[dict]], dict]


class DeployError(RuntimeError):
    """A deploy or rollback was refused or failed; what was live stays live."""


def predictions(pack: Pack, body: dict, expected_rows: int, where: str) -> list[float]:
    """The model outputs (probabilities or values) of a ``/predict`` body, checked for
    length."""
    key = prediction_key(pack)
    got = [p[key] for p in body.get("predictions", [])]
    if len(got) != expected_rows:
        raise DeployError(f"{where}: answered {len(got)} predictions for {expected_rows} rows")
    return got


def smoke_check(pack: Pack, predict: Predict, model_version: ModelVersion, where: str) -> int:
    """Predict the rows recorded at training for ``model_version``; they must match.

    :param predict: sends rows to the candidate.
    :param where: names the candidate in messages (e.g. ``slot green``).
    :return: the number of rows checked.
    :raises DeployError: no smoke rows, another version answered, or a prediction differs
        by more than :data:`SMOKE_TOLERANCE`.
    """
    smoke = model_version.metadata.get("smoke") or {}
    rows, expected = smoke.get("rows"), smoke.get("predictions")
    if not rows or expected is None or len(rows) != len(expected):
        raise DeployError(f"{model_version.version} has no usable smoke rows in its "
                          "registry metadata; cannot check it before switching")
    body = predict(rows)
    got = predictions(pack, body, len(rows), where)
    wrong = [i for i, (g, e) in enumerate(zip(got, expected, strict=True))
             if not math.isclose(g, e, rel_tol=0.0, abs_tol=SMOKE_TOLERANCE)]
    if body.get("model_version") != model_version.version or wrong:
        i = wrong[0] if wrong else 0
        raise DeployError(
            f"{where}: smoke predictions of {body.get('model_version')} differ from those "
            f"recorded at training for {model_version.version} in {len(wrong)} of {len(rows)} "
            f"rows (row {i}: {got[i]} vs {expected[i]}, tolerance {SMOKE_TOLERANCE})")
    log.info("%s smoke test passed: %d rows match training", where, len(rows))
    return len(rows)


def _tail_lines(path: Path, count: int, block: int = 1 << 16) -> list[bytes]:
    """Up to the last ``count`` complete lines of ``path``, read backwards in blocks."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            position = max(0, position - block)
            fh.seek(position)
            data = fh.read(end - position)
    complete = data[:data.rfind(b"\n") + 1]  # drop a line still being written
    lines = complete.splitlines()
    if position > 0:
        lines = lines[1:]  # the first may be cut
    return lines[-count:]


def recent_served_rows(serving_dir: Path, limit: int, columns: list[str]) -> list[dict]:
    """The last ``limit`` rows written to the prediction log, newest files first (only the
    tail of each file is read).

    :param columns: the raw input columns to keep of each logged row.
    """
    files = sorted(predictions_dir(serving_dir).glob("date=*/*.jsonl"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    rows: list[dict] = []
    if limit <= 0:
        return rows
    for path in files:
        for line in reversed(_tail_lines(path, limit - len(rows))):
            try:
                record = json.loads(line)
                rows.append({c: record[c] for c in columns})
            except (json.JSONDecodeError, KeyError):
                continue
        if len(rows) >= limit:
            break
    return rows


def shadow_compare(pack: Pack, candidate: Predict, live: Predict, rows: list[dict],
                   limits: ServingSettings, where: str, batch_rows: int = 1000) -> dict:
    """Send ``rows`` to the candidate and to the live slot and compare their outputs.

    :return: ``rows``, ``mean_abs_diff``, ``max_abs_diff``, ``threshold``, the measure the
        limit applies to: ``disagreement`` (binary: share of rows whose call differs) or
        ``relative_diff`` (regression: mean |difference| / mean |live prediction|), and its
        interval ``ci_low``, ``ci_high`` at ``confidence`` (``shadow_confidence``).
    :raises DeployError: the interval's lower bound is over the limit.
    """
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(0, len(rows), batch_rows):
        batch = rows[i:i + batch_rows]
        ours += predictions(pack, candidate(batch), len(batch), where)
        theirs += predictions(pack, live(batch), len(batch), "live slot")
    diffs = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    mean_diff = sum(diffs) / len(diffs) if diffs else 0.0
    confidence = limits.shadow_confidence
    result = {"rows": len(rows), "mean_abs_diff": round(mean_diff, 4),
              "max_abs_diff": round(max(diffs), 4) if diffs else 0.0}
    if pack.task == "binary":
        differ = sum((a >= 0.5) != (b >= 0.5) for a, b in zip(ours, theirs, strict=True))
        share = differ / len(rows) if rows else 0.0
        low, high = share_interval(differ, len(rows), confidence)
        limit, measure = limits.shadow_max_disagreement, "disagreement"
        what = (f"its call differs from the live slot's on {differ} of {len(rows)} recent "
                f"served rows")
    else:
        share, low, high = ratio_interval(diffs, [abs(b) for b in theirs], confidence)
        limit, measure = limits.shadow_max_relative_diff, "relative_diff"
        what = (f"its predictions differ from the live slot's by {share:.2%} of the live mean "
                f"on {len(rows)} recent served rows")
    result.update({measure: round(share, 4), "ci_low": round(low, 4),
                   "ci_high": round(high, 4), "confidence": confidence, "threshold": limit})
    interval = f"{share:.2%}, {confidence:.0%} CI {low:.2%} to {high:.2%}"
    if rows and low > limit:
        raise DeployError(f"{where}: shadow comparison failed: {what} ({interval}: its lower "
                          f"bound {low:.2%} > {limit:.2%} allowed, over by {low - limit:.2%}); "
                          f"mean |difference| {result['mean_abs_diff']}")
    log.info("%s shadow comparison: %d rows, %s %s (lower bound limit %.2f%%), mean |diff| "
             "%.4f", where, len(rows), measure, interval, 100 * limit, result["mean_abs_diff"])
    return result
