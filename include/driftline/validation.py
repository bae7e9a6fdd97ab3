"""Schema and data-quality checks for one landing file, run before anything is stored.

Column presence and types are checked first (a file without them cannot be measured).
Row count, null shares and value ranges are Evidently tests, so the same report format is
kept for every file. Every failed check names the column, the measured value and the limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from driftline.settings import ValidationSettings

NUMERIC, TEXT = "numeric", "text"

# column -> (kind, required non-null, (low, high) physical range or None)
SCHEMA: dict[str, tuple[str, bool, tuple[float, float] | None]] = {
    "year": (NUMERIC, True, (2000, 2100)),
    "month": (NUMERIC, True, (1, 12)),
    "day": (NUMERIC, True, (1, 31)),
    "sched_dep_time": (NUMERIC, True, (0, 2359)),
    "sched_arr_time": (NUMERIC, True, (0, 2359)),
    "dep_delay": (NUMERIC, False, (-180, 2000)),
    "arr_delay": (NUMERIC, False, (-180, 2000)),
    "carrier": (TEXT, True, None),
    "flight": (NUMERIC, True, (1, 99999)),
    "origin": (TEXT, True, None),
    "dest": (TEXT, True, None),
    "distance": (NUMERIC, True, (1, 6000)),
    "time_hour": (TEXT, True, None),
    "temp": (NUMERIC, False, (-40, 130)),
    "dewp": (NUMERIC, False, (-60, 100)),
    "humid": (NUMERIC, False, (0, 100)),
    "wind_dir": (NUMERIC, False, (0, 360)),
    "wind_speed": (NUMERIC, False, (0, 150)),
    "wind_gust": (NUMERIC, False, (0, 200)),
    "precip": (NUMERIC, False, (0, 10)),
    "pressure": (NUMERIC, False, (850, 1100)),
    "visib": (NUMERIC, False, (0, 100)),
}
WEATHER_NULL_CHECKED = ["temp", "humid", "wind_speed", "precip", "visib"]
"""Weather columns whose null share is limited; wind_gust/pressure are sparse at source."""


@dataclass(frozen=True)
class Check:
    """One named check with what was measured and the limit it was held to."""

    name: str
    column: str | None
    value: float | str
    threshold: float | str
    passed: bool

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        verdict = "passed" if self.passed else "FAILED"
        return f"{self.name}{where} {verdict}: measured {self.value}, limit {self.threshold}"


@dataclass
class ValidationResult:
    """Outcome of validating one file."""

    source: str
    rows: int
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"source": self.source, "rows": self.rows, "passed": self.passed,
                "checks": [asdict(c) for c in self.checks]}


class DataValidationError(ValueError):
    """A landing file failed validation; ``result`` says which checks and by how much."""

    def __init__(self, result: ValidationResult):
        self.result = result
        reasons = "; ".join(c.describe() for c in result.failures)
        super().__init__(f"{result.source} failed validation: {reasons}")


def _schema_checks(df: pd.DataFrame) -> list[Check]:
    checks = []
    for column, (kind, _, _) in SCHEMA.items():
        if column not in df.columns:
            checks.append(Check("required column present", column, "missing", "present", False))
            continue
        series = df[column]
        if kind == NUMERIC:
            ok = pd.api.types.is_numeric_dtype(series) or series.isna().all()
            actual = str(series.dtype)
        else:
            ok = pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
            actual = str(series.dtype)
        if not ok:
            checks.append(Check("column type", column, actual, kind, False))
    return checks


def _quality_checks(df: pd.DataFrame, limits: ValidationSettings) -> list[Check]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, OutRangeValueCount, RowCount
    from evidently.tests import gte, lte

    numeric = [c for c, (kind, _, _) in SCHEMA.items() if kind == NUMERIC]
    text = [c for c, (kind, _, _) in SCHEMA.items() if kind == TEXT]
    metrics = [RowCount(tests=[gte(limits.min_rows)])]
    for column, (_, required, bounds) in SCHEMA.items():
        if required:
            metrics.append(MissingValueCount(
                column=column, share_tests=[lte(limits.max_null_share_required)]))
        elif column in WEATHER_NULL_CHECKED:
            metrics.append(MissingValueCount(
                column=column, share_tests=[lte(limits.max_null_share_weather)]))
        if bounds and df[column].notna().any():
            metrics.append(OutRangeValueCount(
                column=column, left=bounds[0], right=bounds[1],
                share_tests=[lte(limits.max_out_of_range_share)]))
    dataset = Dataset.from_pandas(
        df, data_definition=DataDefinition(numerical_columns=numeric, categorical_columns=text))
    report = Report(metrics, include_tests=True).run(dataset).dict()
    values = {metric["id"]: metric["value"] for metric in report["metrics"]}
    return [_check_from_test(test, values) for test in report["tests"]]


def _check_from_test(test: dict, values: dict) -> Check:
    params = test["metric_config"]["params"]
    metric_type = params["type"].rsplit(":", 1)[-1]
    column = params.get("column")
    value = values[test["metric_config"]["metric_id"]]
    if isinstance(value, dict):  # count metrics carry {"count", "share"}; tests use the share
        value = value.get("share", value.get("count"))
    names = {"RowCount": "row count", "MissingValueCount": "null share",
             "OutRangeValueCount": "out-of-range share"}
    name = names.get(metric_type, metric_type)
    if metric_type == "OutRangeValueCount":
        name += f" [{params['left']}, {params['right']}]"
    return Check(name=name, column=column, value=round(float(value), 6),
                 threshold=test["test_config"]["threshold"], passed=test["status"] == "SUCCESS")


def validate_landing_frame(df: pd.DataFrame, source: str,
                           limits: ValidationSettings | None = None) -> ValidationResult:
    """Check one day's landing data.

    :param df: the file's rows as read by :func:`driftline.sources.read_landing_file`.
    :param source: the file name, used in every message.
    :param limits: thresholds; default :class:`ValidationSettings`.
    """
    limits = limits or ValidationSettings()
    schema_failures = _schema_checks(df)
    if schema_failures:  # quality metrics cannot run on a file without its columns
        return ValidationResult(source, len(df), schema_failures)
    return ValidationResult(source, len(df), _quality_checks(df, limits))
