"""Draft a pack spec from a sample file, for a person to review (as TFX's SchemaGen does).

From the sample it infers each column's type, observed range and null share, which columns
could be the time and id columns, and the vocabulary of low-cardinality text columns. The
label is the one thing it is told. Every inferred limit is widened a little and commented,
so the draft validates and ingests the sample, and the reviewer sees what was guessed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import tomlkit

MAX_CATEGORIES = 50
"""Text columns with at most this many distinct values become categories."""
ID_MIN_UNIQUE = 0.99


def read_sample(path: Path) -> pd.DataFrame:
    """Read a CSV, gzipped CSV or Parquet sample.

    :raises ValueError: the file cannot be read, or has no rows.
    """
    path = Path(path)
    try:
        if path.name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, compression="gzip" if path.name.endswith(".gz") else None)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not a readable CSV/Parquet sample: {exc}") from exc
    if frame.empty:
        raise ValueError(f"{path.name}: the sample has no rows to learn from")
    return frame


def _is_time(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
        return False
    text = series.dropna().astype(str).head(200)
    if text.empty or not text.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return False
    return bool(pd.to_datetime(text, format="ISO8601", errors="coerce").notna().all())


def _column_type(series: pd.Series) -> str:
    if _is_time(series):
        return "datetime"
    if pd.api.types.is_bool_dtype(series):
        return "category"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_numeric_dtype(series):
        values = series.dropna()
        return "integer" if len(values) and (values % 1 == 0).all() else "number"
    distinct = series.nunique(dropna=True)
    few = distinct <= MAX_CATEGORIES and distinct <= max(2, 0.5 * series.notna().sum())
    return "category" if few else "text"


def _widen(low: float, high: float, integer: bool) -> list:
    span = (high - low) or abs(high) or 1.0
    low, high = low - 0.1 * span, high + 0.1 * span
    if integer:
        return [math.floor(low), math.ceil(high)]
    return [float(f"{low:.6g}"), float(f"{high:.6g}")]


def _column(series: pd.Series, kind: str) -> tuple[dict, str]:
    """The column's spec and a comment saying what was observed."""
    nulls = float(series.isna().mean())
    spec: dict = {"type": kind}
    notes = [f"{nulls:.1%} null"]
    if nulls == 0:
        spec["nullable"] = False
    else:
        spec["max_null_share"] = round(min(1.0, nulls * 1.5 + 0.01), 3)
    values = series.dropna()
    if kind in ("integer", "number") and len(values):
        low, high = float(values.min()), float(values.max())
        spec["range"] = _widen(low, high, kind == "integer")
        notes.append(f"observed {low:g}..{high:g}")
    if kind == "category":
        vocab = sorted(values.astype(str).unique().tolist())
        spec["categories"] = vocab
        notes.append(f"{len(vocab)} values seen")
    if kind == "text":
        notes.append(f"{values.nunique()} distinct values")
    return spec, ", ".join(notes)


def draft_spec(sample: pd.DataFrame, name: str, label: str, *, sample_name: str = "sample.csv",
               task: str | None = None, time_column: str | None = None,
               interval: str = "daily", timezone: str = "UTC") -> tomlkit.TOMLDocument:
    """A commented spec for ``sample``, to be reviewed and edited.

    :param label: the column the model learns (its task is inferred unless ``task`` is given:
        two distinct values → binary, more → regression).
    :param time_column: default the first column that parses as ISO 8601 times.
    :raises ValueError: the label or time column is missing, or no time column is found.
    """
    if label not in sample.columns:
        raise ValueError(f"label column {label!r} is not in the sample (columns: "
                         f"{list(sample.columns)})")
    kinds = {c: _column_type(sample[c]) for c in sample.columns}
    times = [c for c, k in kinds.items() if k == "datetime"]
    time_column = time_column or (times[0] if times else None)
    if time_column is None or time_column not in sample.columns:
        raise ValueError("no column parses as ISO 8601 times; pass the time column "
                         f"(columns: {list(sample.columns)})")
    kinds[time_column] = "datetime"
    values = sample[label].dropna()
    if task is None:
        task = "binary" if values.nunique() == 2 else "regression"
    if task == "regression" and kinds[label] not in ("integer", "number"):
        raise ValueError(f"label {label!r} is not numeric; a regression needs numbers")
    ids = [c for c, k in kinds.items() if k in ("text", "integer") and c not in (label,
           time_column) and sample[c].nunique() >= ID_MIN_UNIQUE * len(sample)]

    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Drafted by `driftline pack init` from {sample_name} "
                            f"({len(sample)} rows). Review every field before use."))
    doc["name"] = name
    doc["description"] = f"drafted from {sample_name}: review"
    doc["task"] = task
    if ids:
        doc["id_column"] = ids[0]
        doc["id_column"].comment(f"unique in the sample; candidates: {ids}")
        doc["key"] = [time_column, ids[0]]
    landing = tomlkit.table()
    suffix = ".parquet" if sample_name.endswith(".parquet") else (
        ".csv.gz" if sample_name.endswith(".gz") else ".csv")
    landing["pattern"] = f"{name}_{{date}}{suffix}"
    landing["interval"] = interval
    doc["landing"] = landing
    time = tomlkit.table()
    time["column"] = time_column
    time["timezone"] = timezone
    time["timezone"].comment("the zone data intervals are cut in: check it")
    if len(times) > 1:
        others = [t for t in times if t != time_column]
        time.add(tomlkit.comment(f"other time-like columns: {others}"))
    doc["time"] = time

    columns = tomlkit.table()
    for column in sample.columns:
        spec, note = _column(sample[column], kinds[column])
        entry = tomlkit.inline_table()
        entry.update(spec)
        columns[column] = entry
        columns[column].comment(note)
    doc["columns"] = columns

    excluded = {c: "identifier: unique per row, nothing to learn" for c in ids}
    excluded.update({c: "free text with many values: review" for c, k in kinds.items()
                     if k == "text" and c not in excluded and c != time_column})
    excluded_table = tomlkit.table()
    excluded_table.add(tomlkit.comment("columns known only after the outcome (leakage) go "
                                       "here too, with the reason"))
    for column, why in excluded.items():
        excluded_table[column] = why
    doc["excluded"] = excluded_table

    label_table = tomlkit.table()
    label_table["column"] = label
    if task == "binary":
        positive = sorted(values.unique().tolist())[-1]
        label_table["rule"] = (f"== {positive!r}" if isinstance(positive, str)
                               else f"== {positive:g}")
        label_table["rule"].comment(f"values seen: {sorted(map(str, values.unique()))}")
    else:
        label_table["rule"] = "value"
    label_table["name"] = _safe_name(label)
    doc["label"] = label_table

    skip = {label, time_column, *excluded}
    features = tomlkit.table()
    features["numeric"] = [c for c in sample.columns
                           if c not in skip and kinds[c] in ("integer", "number")]
    features["categorical"] = [c for c in sample.columns
                               if c not in skip and kinds[c] == "category"]
    doc["features"] = features
    validation = tomlkit.table()
    validation["min_rows"] = max(1, len(sample) // 2)
    validation["min_rows"].comment(f"half the sample's {len(sample)} rows: set it to what a "
                                   "normal interval holds")
    doc["validation"] = validation
    return doc


def _safe_name(column: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", column.lower()).strip("_") or "label"
    return name if name[0].isalpha() else f"label_{name}"[:31]


def write_draft(sample_path: Path, directory: Path, label: str, **options) -> Path:
    """Write ``directory/pack.toml`` drafted from ``sample_path`` (the pack is named after
    the directory).

    :raises FileExistsError: the directory already has a ``pack.toml`` (nothing is changed).
    """
    directory = Path(directory)
    target = directory / "pack.toml"
    if target.exists():
        raise FileExistsError(f"{target} exists; refusing to overwrite a reviewed spec")
    sample = read_sample(sample_path)
    doc = draft_spec(sample, directory.name, label, sample_name=Path(sample_path).name,
                     **options)
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(tomlkit.dumps(doc))
    return target
