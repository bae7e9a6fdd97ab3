"""Schema and data-quality checks for one landing file, generated from its pack's spec and
run before anything is stored.

Column presence and types are checked first (a file without them cannot be measured). Row
count, null shares, value ranges, unknown categories and rows outside the file's data
interval are measured as Evidently 0.7's metrics and tests measure them (same figures and
verdicts, tested against :func:`evidently_quality_checks`, at a fraction of the cost on
large intervals); duplicated rows and the row count against the pack's recent intervals
follow, each failing or only warning per the pack's ``[validation]`` policy. Every failed
check names the column, the measured value and the limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from driftline.packs import Pack
from driftline.packs.spec import NUMERIC_TYPES
from driftline.packs.timeline import local_times
from driftline.settings import ValidationSettings

TIME_OFFSET = "__hours_into_interval"
"""A computed column: hours from the interval's start to each row's time (must be in range)."""


@dataclass(frozen=True)
class Check:
    """One named check with what was measured and the limit it was held to.

    A failed check of severity ``warn`` is reported but does not reject the file (the pack's
    ``[validation] on_duplicates`` / ``on_volume`` policy).
    """

    name: str
    column: str | None
    value: float | str
    threshold: float | str
    passed: bool
    severity: str = "fail"

    @property
    def rejects(self) -> bool:
        return not self.passed and self.severity == "fail"

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        verdict = "passed" if self.passed else "FAILED" if self.rejects else "WARNING"
        return f"{self.name}{where} {verdict}: measured {self.value}, limit {self.threshold}"


@dataclass
class ValidationResult:
    """Outcome of validating one file."""

    source: str
    rows: int
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        """The checks that reject the file."""
        return [c for c in self.checks if c.rejects]

    @property
    def warnings(self) -> list[Check]:
        """Failed checks the pack's policy only reports."""
        return [c for c in self.checks if not c.passed and not c.rejects]

    def to_dict(self) -> dict:
        return {"source": self.source, "rows": self.rows, "passed": self.passed,
                "warnings": [c.describe() for c in self.warnings],
                "checks": [asdict(c) for c in self.checks]}


class DataValidationError(ValueError):
    """A landing file failed validation; ``result`` says which checks and by how much."""

    def __init__(self, result: ValidationResult):
        self.result = result
        reasons = "; ".join(c.describe() for c in result.failures)
        super().__init__(f"{result.source} failed validation: {reasons}")


def _schema_checks(pack: Pack, df: pd.DataFrame) -> list[Check]:
    checks = []
    for column, spec in pack.spec.columns.items():
        if column not in df.columns:
            if spec.required:
                checks.append(Check("required column present", column, "missing", "present",
                                    False))
            continue
        series = df[column]
        if spec.type in NUMERIC_TYPES:
            ok = bool(pd.api.types.is_numeric_dtype(series) or series.isna().all())
            expected = "numeric"
        else:
            ok = pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
            expected = "text"
        if not ok:
            checks.append(Check("column type", column, str(series.dtype), expected, False))
    return checks


def hours_into_interval(pack: Pack, df: pd.DataFrame, start: dt.date) -> np.ndarray:
    """Hours from the interval's start (local midnight) to each row's time; NaN when the
    time does not parse."""
    times = local_times(df[pack.time_column], pack.spec.time)
    origin = np.datetime64(start.isoformat(), "ns")
    return (times.to_numpy() - origin) / np.timedelta64(1, "h")


@dataclass(frozen=True)
class _Measure:
    """One quality measurement, in Evidently's terms: a metric, its column and its test."""

    metric: str  # the Evidently metric type it reproduces
    column: str | None
    threshold: float
    at_least: bool = False  # the test is ``gte`` (else ``lte``)
    range: tuple[float, float] | None = None  # OutRangeValueCount's [left, right]
    values: tuple | None = None  # OutListValueCount's list


def _measures(pack: Pack, df: pd.DataFrame, limits: ValidationSettings,
              start: dt.date | None) -> list[_Measure]:
    """What the quality checks measure, in the order they are reported."""
    measures = [_Measure("RowCount", None, limits.min_rows, at_least=True)]
    for column, spec in pack.spec.columns.items():
        if column not in df.columns:
            continue
        limit = 0.0 if not spec.nullable else spec.max_null_share
        if limit is not None:
            measures.append(_Measure("MissingValueCount", column, limit))
        if spec.range and df[column].notna().any():
            measures.append(_Measure("OutRangeValueCount", column,
                                     limits.max_out_of_range_share,
                                     range=(spec.range[0], spec.range[1])))
        if spec.categories is not None and df[column].notna().any():
            measures.append(_Measure("OutListValueCount", column,
                                     limits.max_unknown_category_share,
                                     values=tuple(spec.categories)))
    if start is not None:
        hours = pack.interval_end(start) - start
        measures.append(_Measure("OutRangeValueCount", TIME_OFFSET,
                                 limits.max_outside_interval_share,
                                 range=(0.0, hours.total_seconds() / 3600 - 1e-9)))
        measures.append(_Measure("MissingValueCount", TIME_OFFSET, 0.0))
    return measures


def _measured_value(measure: _Measure, series: pd.Series | None, rows: int) -> float:
    """The figure Evidently 0.7's metric gives (a count metric's share), by the same pandas
    expressions as its ``_calculate_value``."""
    if series is None:  # RowCount
        return rows
    present = series.count()
    if measure.metric == "MissingValueCount":
        return (len(series) - present) / len(series)
    if measure.range is not None:  # OutRangeValueCount
        left, right = measure.range
        return (present - series.between(left, right).sum()) / present
    inside = series.value_counts().reindex(list(measure.values or ()), fill_value=0).sum()
    return (present - float(inside)) / present


def quality_checks(pack: Pack, df: pd.DataFrame, limits: ValidationSettings,
                    start: dt.date | None) -> list[Check]:
    """Row count, null shares, value ranges, unknown categories and rows outside the data
    interval, measured as Evidently 0.7's ``RowCount``, ``MissingValueCount``,
    ``OutRangeValueCount`` and ``OutListValueCount`` with ``gte``/``lte`` tests measure them
    (the same figures and verdicts as :func:`evidently_quality_checks`, tested), without
    building an Evidently dataset: that cost ~6 s on a million-row interval."""
    offsets = (pd.Series(hours_into_interval(pack, df, start), index=df.index)
               if start is not None else None)
    checks = []
    for measure in _measures(pack, df, limits, start):
        series = (None if measure.column is None
                  else offsets if measure.column == TIME_OFFSET else df[measure.column])
        value = float(_measured_value(measure, series, len(df)))
        passed = (value >= measure.threshold if measure.at_least
                  else value <= measure.threshold)
        checks.append(_check(measure, value, passed))
    return checks + _distinct_checks(pack, df)


def _distinct_checks(pack: Pack, df: pd.DataFrame) -> list[Check]:
    checks = []
    for column, spec in pack.spec.columns.items():  # Evidently has no test on a distinct count
        if column in df.columns and spec.max_categories is not None:
            distinct = int(df[column].nunique(dropna=True))
            checks.append(Check("distinct values", column, distinct, spec.max_categories,
                                distinct <= spec.max_categories))
    return checks


def _check(measure: _Measure, value: float, passed: bool) -> Check:
    names = {"RowCount": "row count", "MissingValueCount": "null share",
             "OutRangeValueCount": "out-of-range share",
             "OutListValueCount": "unknown-category share"}
    name = names[measure.metric]
    column = measure.column
    if measure.range is not None:
        name += f" [{measure.range[0]}, {measure.range[1]}]"
    if column == TIME_OFFSET:
        column = None
        name = ("share of rows outside the data interval"
                if measure.metric == "OutRangeValueCount"
                else "share of rows whose time does not parse")
    return Check(name=name, column=column, value=round(value, 6), threshold=measure.threshold,
                 passed=passed)


def evidently_quality_checks(pack: Pack, df: pd.DataFrame, limits: ValidationSettings,
                             start: dt.date | None) -> list[Check]:
    """The quality checks run as an Evidently 0.7 report with tests: the reference
    :func:`quality_checks` is tested against, and the stock path of ``bench/bench_ingest.py``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import (
        MissingValueCount,
        OutListValueCount,
        OutRangeValueCount,
        RowCount,
    )
    from evidently.tests import gte, lte

    metric_types = {"RowCount": RowCount, "MissingValueCount": MissingValueCount,
                    "OutRangeValueCount": OutRangeValueCount,
                    "OutListValueCount": OutListValueCount}
    measures = _measures(pack, df, limits, start)
    columns = [c for c in pack.spec.columns if c in df.columns]
    numeric = [c for c in columns if pack.spec.columns[c].type in NUMERIC_TYPES]
    frame = df[columns]
    if start is not None:
        frame = frame.assign(**{TIME_OFFSET: hours_into_interval(pack, df, start)})
        numeric.append(TIME_OFFSET)
    metrics = []
    for measure in measures:
        test = (gte if measure.at_least else lte)(measure.threshold)
        kwargs: dict = {}
        if measure.column is not None:
            kwargs = {"column": measure.column, "share_tests": [test]}
        else:
            kwargs = {"tests": [test]}
        if measure.range is not None:
            kwargs.update(left=measure.range[0], right=measure.range[1])
        if measure.values is not None:
            kwargs["values"] = list(measure.values)
        metrics.append(metric_types[measure.metric](**kwargs))
    dataset = Dataset.from_pandas(frame, data_definition=DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in columns if c not in numeric]))
    report = Report(metrics, include_tests=True).run(dataset).dict()
    values = {metric["id"]: metric["value"] for metric in report["metrics"]}
    checks = []
    for measure, test in zip(measures, report["tests"], strict=True):
        value = values[test["metric_config"]["metric_id"]]
        if isinstance(value, dict):  # count metrics carry {"count", "share"}; tests use the share
            value = value.get("share", value.get("count"))
        checks.append(_check(measure, float(value), test["status"] == "SUCCESS"))
    return checks + _distinct_checks(pack, df)


def volume_checks(pack: Pack, df: pd.DataFrame, limits: ValidationSettings,
                  history_rows: list[int]) -> list[Check]:
    """Duplicated rows (by the pack's key, else whole rows), and the row count against the
    pack's recent intervals."""
    key = [c for c in pack.spec.key if c in df.columns] or None
    duplicated = round(float(df.duplicated(subset=key).mean()), 6)
    checks = [Check("duplicate row share", None, duplicated, limits.max_duplicate_share,
                    duplicated <= limits.max_duplicate_share, limits.on_duplicates)]
    if history_rows and limits.max_rows_vs_history:
        median = float(np.median(history_rows))
        ratio = round(len(df) / median, 3)
        checks.append(Check(f"row count / median of the last {len(history_rows)} intervals "
                            f"({median:g} rows)", None, ratio, limits.max_rows_vs_history,
                            ratio <= limits.max_rows_vs_history, limits.on_volume))
    return checks


def validate_landing_frame(pack: Pack, df: pd.DataFrame, source: str,
                           limits: ValidationSettings | None = None,
                           start: dt.date | None = None,
                           history_rows: list[int] | None = None) -> ValidationResult:
    """Check one interval's landing data against its pack's spec.

    :param df: the file's rows as read by :func:`driftline.landing.read_landing_file`.
    :param source: the file name, used in every message.
    :param limits: thresholds; default :class:`ValidationSettings`.
    :param start: the data interval's first day: every row's time must fall inside it.
    :param history_rows: row counts of the pack's recent intervals (the volume check).
    """
    limits = limits or ValidationSettings()
    schema_failures = _schema_checks(pack, df)
    if schema_failures:  # quality metrics cannot run on a file without its columns
        return ValidationResult(source, len(df), schema_failures)
    if df.empty:  # Evidently's metrics fail on an empty frame; nothing else can be measured
        return ValidationResult(source, 0, [Check("row count", None, 0, f">= {limits.min_rows}",
                                                  False)])
    checks = quality_checks(pack, df, limits, start) + volume_checks(pack, df, limits,
                                                                       history_rows or [])
    return ValidationResult(source, len(df), checks)
