"""The dataset-pack spec: one declarative file that says what a team's data is and what to
learn from it, validated strictly (unknown fields, wrong types and inconsistent references
are refused with the field named).

A pack is a directory with ``pack.toml`` and, only where a declarative rule cannot say it, a
``hooks.py`` of pure functions. The spec's columns, label and features are declared once and
used by every stage, as Evidently's ``DataDefinition`` declares roles once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ColumnType = Literal["integer", "number", "category", "text", "datetime"]
NUMERIC_TYPES = ("integer", "number")
Task = Literal["binary", "regression"]
Metric = Literal["auc", "logloss", "accuracy", "f1", "precision", "recall", "rmse", "mae", "r2"]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "logloss", "accuracy", "f1", "precision", "recall"),
    "regression": ("rmse", "mae", "r2"),
}
HIGHER_IS_BETTER = {"auc", "accuracy", "f1", "precision", "recall", "r2"}
METRIC_LABELS = {"auc": "AUC", "logloss": "log loss", "accuracy": "accuracy", "f1": "F1",
                 "precision": "precision", "recall": "recall", "rmse": "RMSE", "mae": "MAE",
                 "r2": "R2"}

NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
HOOK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_RULE = re.compile(
    r"""^\s*(?:(?P<value>value)|(?P<op>>=|<=|==|!=|>|<)\s*(?:(?P<number>[-+]?\d+(?:\.\d+)?)|
    (?P<quote>["'])(?P<text>[^"']*)(?P=quote)))\s*$""", re.VERBOSE)


class Strict(BaseModel):
    """Base of every spec section: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ColumnSpec(Strict):
    """One column of the landing data."""

    type: ColumnType
    """``integer``, ``number``, ``category``, ``text`` or ``datetime``."""
    required: bool = True
    """The column must be present in every landing file."""
    nullable: bool = True
    """Whether values may be missing; ``false`` is a null-share limit of 0."""
    max_null_share: float | None = Field(None, ge=0, le=1)
    """Largest share of missing values per file (checked when set, or 0 when not nullable)."""
    range: tuple[float, float] | None = None
    """Physical ``[low, high]``; the share outside it is limited by
    ``[validation] max_out_of_range_share``."""
    categories: list[str] | None = None
    """The known vocabulary; the share of other values is limited by
    ``[validation] max_unknown_category_share``."""
    max_categories: int | None = Field(None, ge=1)
    """Largest number of distinct values one file may hold (a cap instead of, or beside, a
    vocabulary)."""
    description: str = ""
    """What the column means, for people."""

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.range is not None:
            if self.type not in NUMERIC_TYPES:
                raise ValueError(f"range is only for integer/number columns, not {self.type}")
            if self.range[0] > self.range[1]:
                raise ValueError(f"range low {self.range[0]} is above high {self.range[1]}")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"categories are only for category columns, not {self.type}")
        if self.max_categories is not None and self.type not in ("category", "text"):
            raise ValueError(f"max_categories is only for category/text columns, not "
                             f"{self.type}")
        return self


class LandingSpec(Strict):
    """Where and how upstream drops one file per data interval."""

    pattern: str
    """File name with ``{date}``, the interval's first day as YYYY-MM-DD."""
    format: Literal["csv", "csv.gz", "parquet"] | None = None
    """Default: from the pattern's suffix (.csv, .csv.gz, .parquet)."""
    interval: Literal["daily", "monthly"] = "daily"
    """One file (and one partition) per day or per calendar month."""
    delimiter: str = Field(",", min_length=1, max_length=1)
    """CSV field separator."""

    @field_validator("pattern")
    @classmethod
    def _has_date(cls, value: str) -> str:
        if value.count("{date}") != 1 or "/" in value:
            raise ValueError("must be a file name containing {date} exactly once, e.g. "
                             "'sales_{date}.csv'")
        return value

    @model_validator(mode="after")
    def _format(self) -> LandingSpec:
        if self.format is None:
            for suffix, fmt in ((".csv.gz", "csv.gz"), (".csv", "csv"), (".parquet", "parquet")):
                if self.pattern.endswith(suffix):
                    object.__setattr__(self, "format", fmt)
                    break
            else:
                raise ValueError("format is not set and the pattern ends in none of .csv, "
                                 ".csv.gz, .parquet")
        return self


class TimeSpec(Strict):
    """The event time of a row: drives partitions, the holdout and drift windows."""

    column: str
    """The column holding each row's event time."""
    timezone: str = "UTC"
    """Zone in which data intervals are cut; times without an offset are local to it."""
    format: str | None = None
    """``strptime`` format; default ISO 8601."""


class LabelSpec(Strict):
    """What the model learns: a rule on a source column, or a hook."""

    column: str | None = None
    """The source column of the label (with ``rule``)."""
    rule: str | None = None
    """``value`` (regression: the column itself), or a comparison: ``> 15``, ``== 'yes'``."""
    hook: str | None = None
    """Name of a function in the hooks module: ``f(frame) -> sequence`` (NaN: unlabelled)."""
    name: str = Field("label", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    """The prediction's name in responses (binary: ``<name>`` and ``<name>_probability``)."""
    delay_days: int = Field(0, ge=0, le=3660)
    """How many days after an interval ends its outcomes are known (0: the interval's own
    file carries them). Live quality waits until the data reaches that far."""

    @model_validator(mode="after")
    def _one_way(self) -> LabelSpec:
        if (self.rule is None) == (self.hook is None):
            raise ValueError("set exactly one of rule and hook")
        if self.rule is not None:
            if self.column is None:
                raise ValueError("a rule needs the source column (label.column)")
            if not LABEL_RULE.match(self.rule):
                raise ValueError(f"rule {self.rule!r} is not 'value' or '<op> <number or "
                                 "quoted text>' with op one of > >= < <= == !=")
        if self.hook is not None and not HOOK_NAME.match(self.hook):
            raise ValueError(f"hook {self.hook!r} is not a function name")
        return self


class FeaturesSpec(Strict):
    """The model's features: declared columns, or values derived by a hook."""

    numeric: list[str] = []
    """Numeric features: declared integer/number columns or derived values."""
    categorical: list[str] = []
    """Categorical features: declared category/text columns or derived values."""
    derive: str | None = None
    """Function in the hooks module: ``f(columns) -> {feature: array}`` for the features
    that are not columns; ``columns`` maps each input to a numpy array."""
    inputs: list[str] | None = None
    """Raw columns a caller supplies (the request schema). Default: the features that are
    declared columns; required when ``derive`` needs other columns."""

    @model_validator(mode="after")
    def _distinct(self) -> FeaturesSpec:
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"{both} listed as both numeric and categorical")
        if not self.numeric and not self.categorical:
            raise ValueError("declare at least one numeric or categorical feature")
        for kind, names in (("numeric", self.numeric), ("categorical", self.categorical),
                            ("inputs", self.inputs or [])):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} lists a name twice")
        if self.derive is not None and not HOOK_NAME.match(self.derive):
            raise ValueError(f"derive {self.derive!r} is not a function name")
        return self


class SourceSpec(Strict):
    """Where the demo's replay reads the whole history (optional; never used by ingest)."""

    loader: str
    """Function in the hooks module returning a frame of every row with the time column."""
    description: str = ""
    """Where the rows come from, for people."""
    history: tuple[dt.date, dt.date] | None = None
    """The demo's first phase: the span it ingests and trains the first model on."""
    replay_months: int = Field(6, ge=0, le=120)
    """The demo's second phase: months replayed one by one after ``history``."""


class PackSpec(Strict):
    """A whole dataset pack."""

    name: str
    """The pack's name: its directory's name, the prefix of its DAG ids, its registry
    namespace and its endpoint ``/<name>/predict``."""
    description: str = ""
    """One line for people (DAG docs, the UI)."""
    task: Task
    """``binary`` (probability of the positive label) or ``regression`` (a value)."""
    hooks: str | None = None
    """Python file next to the spec with the pack's pure functions; default ``hooks.py``
    when it exists."""
    landing: LandingSpec
    time: TimeSpec
    id_column: str | None = None
    """Identifies a row (joins served predictions to outcomes); optional in requests."""
    key: list[str] = []
    """Natural key: sorts each partition and defines duplicate rows. Default: every column."""
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    excluded: dict[str, str] = {}
    """Columns kept in the lake but never used as features, each with the reason (leakage)."""
    label: LabelSpec
    features: FeaturesSpec
    primary_metric: Metric | None = None
    """Default: ``auc`` (binary) or ``rmse`` (regression)."""
    source: SourceSpec | None = None
    """Where the demo replays history from (``[source]``)."""
    training: dict = {}
    """Overrides of ``[training]`` (window, holdout, hyperparameters); see the settings."""
    gate: dict = {}
    """Overrides of ``[gate]``: ``floors``, ``max_worsening``, ``max_train_drift_share``,
    ``allow_label_change``, ``significance``, ``confidence``."""
    monitor: dict = {}
    validation: dict = {}
    serving: dict = {}
    retrain: dict = {}
    """Overrides of ``[retrain]``: the retrain policy's rules, ``consecutive``,
    ``cooldown_days``, ``cadence_days``."""
    alerts: dict = {}
    """Overrides of ``[alerts]``: ``events``, ``email_to``, ``smtp_conn_id``,
    ``webhook_conn_id``, ``ui_base_url``."""

    @property
    def metric(self) -> str:
        """The primary metric: ``primary_metric``, else the task's first."""
        return self.primary_metric or TASK_METRICS[self.task][0]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("must be lower-case letters, digits and _, starting with a letter, "
                             "at most 31 characters")
        return value



Errors = Iterator[tuple[str, str]]


def reference_errors(spec: PackSpec, gate: dict | None = None) -> list[tuple[str, str]]:
    """Names the spec uses that it does not declare, or uses inconsistently.

    :param gate: the resolved ``[gate]`` tables (``floors``, ``max_worsening``).
    :return: ``(field, message)`` pairs; empty when the spec is consistent.
    """
    return [*_column_reference_errors(spec), *_label_errors(spec), *_feature_errors(spec),
            *_input_errors(spec), *_metric_errors(spec, gate or {})]


def _undeclared(spec: PackSpec, field: str, name: str | None) -> Errors:
    if name is not None and name not in spec.columns:
        yield field, f"{name!r} is not a declared column (columns: {sorted(spec.columns)})"


def _column_reference_errors(spec: PackSpec) -> Errors:
    cols, time_column = spec.columns, spec.time.column
    yield from _undeclared(spec, "time.column", time_column)
    if time_column in cols and cols[time_column].type not in ("datetime", "text"):
        yield "time.column", f"{time_column!r} must be a datetime or text column"
    yield from _undeclared(spec, "id_column", spec.id_column)
    for name in spec.key:
        yield from _undeclared(spec, "key", name)
    for name in spec.excluded:
        yield from _undeclared(spec, "excluded", name)
    yield from _undeclared(spec, "label.column", spec.label.column)


def _label_errors(spec: PackSpec) -> Errors:
    source = spec.label.column
    if spec.label.rule is None or source not in spec.columns:
        return
    rule = LABEL_RULE.match(spec.label.rule)
    if rule is None:  # LabelSpec refuses such a rule
        raise ValueError(f"label rule {spec.label.rule!r} does not parse")
    is_value = rule["value"] is not None
    if spec.task == "regression" and not is_value:
        yield "label.rule", "a regression label is the value itself: rule = 'value'"
    if spec.task == "binary" and is_value:
        yield "label.rule", "a binary label needs a comparison, e.g. '> 15'"
    source_type = spec.columns[source].type
    if is_value and source_type not in NUMERIC_TYPES:
        yield "label.rule", f"'value' needs a numeric column, {source!r} is {source_type}"


def _feature_errors(spec: PackSpec) -> Errors:
    cols, features = spec.columns, spec.features
    derived = [f for f in [*features.numeric, *features.categorical] if f not in cols]
    if derived and features.derive is None:
        yield "features", (f"{derived} are not declared columns and no derive hook makes "
                           "them ([features] derive = \"function name\")")
    for kind, names, types in (("numeric", features.numeric, NUMERIC_TYPES),
                               ("categorical", features.categorical, ("category", "text"))):
        for name in names:
            yield from _feature_misuse(spec, f"features.{kind}", name,
                                       "; remove it from one of the two")
            if name in cols and cols[name].type not in types:
                yield f"features.{kind}", (f"{name!r} is a {cols[name].type} column; "
                                           f"expected {' or '.join(types)}")


def _feature_misuse(spec: PackSpec, field: str, name: str, hint: str = "") -> Errors:
    """A feature or input that is excluded or is the label's source."""
    if name in spec.excluded:
        yield field, f"{name!r} is excluded ({spec.excluded[name]}){hint}"
    if name == spec.label.column:
        yield field, f"{name!r} is the label's source column"


def _input_errors(spec: PackSpec) -> Errors:
    features = spec.features
    for name in features.inputs or []:
        yield from _undeclared(spec, "features.inputs", name)
        yield from _feature_misuse(spec, "features.inputs", name)
    if features.inputs is not None:
        for name in [*features.numeric, *features.categorical]:
            if name in spec.columns and name not in features.inputs:
                yield "features.inputs", (f"feature {name!r} is a column but not an input; "
                                          "add it to inputs (a request must carry it)")
    if features.derive is not None and features.inputs is None:
        yield "features.inputs", ("list the raw columns the derive hook reads (they are the "
                                  "request schema)")


def _metric_errors(spec: PackSpec, gate: dict) -> Errors:
    metrics = TASK_METRICS[spec.task]
    for table in ("floors", "max_worsening"):
        for metric in gate.get(table, {}):
            if metric not in metrics:
                yield f"gate.{table}", (f"{metric!r} is not a {spec.task} metric "
                                        f"(expected one of {list(metrics)})")
    if spec.metric not in metrics:
        yield "primary_metric", (f"{spec.primary_metric!r} is not a {spec.task} metric "
                                 f"(expected one of {list(metrics)})")
