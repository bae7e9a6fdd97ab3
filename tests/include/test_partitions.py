import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
from driftline.partitions import _unique_sorted, canonical_table, write_parquet
from driftline.versioning import canonical_frame

DAY = dt.date(2013, 3, 5)


def _day(flights):
    return flights[(flights.month == DAY.month) & (flights.day == DAY.day)]


def _same_bytes(pack, rows, tmp_path):
    stock = tmp_path / "stock.parquet"
    canonical_frame(pack, rows).to_parquet(stock, index=False, engine="pyarrow",
                                           compression="zstd")
    write_parquet(canonical_table(pack, rows), tmp_path / "new.parquet")
    return (tmp_path / "new.parquet").read_bytes() == stock.read_bytes()


def test_a_shuffled_day_with_repeats_is_stored_byte_for_byte_as_before(tmp_path, flights_pack,
                                                                       flights):
    rows = _day(flights).sample(frac=1, random_state=2)
    twin = rows.head(3).assign(temp=-5.0)  # the same keys, other values: both kept, in order
    rows = pd.concat([rows, rows.head(9), twin, rows.tail(4)])
    assert rows["tailnum"].isna().any()  # missing values inside the key
    assert _same_bytes(flights_pack, rows, tmp_path)
    assert canonical_table(flights_pack, rows).num_rows == len(_day(flights)) + 3


def test_missing_optional_columns_and_numbers_in_a_text_column_as_before(tmp_path,
                                                                         flights_pack, flights):
    rows = _day(flights).drop(columns=["air_time"])
    rows["tailnum"] = np.arange(len(rows)) % 50  # not text: stored as str() of each value
    assert _same_bytes(flights_pack, rows, tmp_path)
    assert _same_bytes(flights_pack, rows.head(0), tmp_path)


def _stock_order(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.drop_duplicates().sort_values(key, kind="stable", na_position="last")


def test_keys_too_wide_for_one_integer_sort_and_dedupe_as_pandas_does():
    """Five keys of 20,000 values each (more rank combinations than an int64 holds) take
    Arrow's multi-column sort; two narrow keys take the one-integer sort."""
    rng = np.random.default_rng(0)
    n = 50_000
    frame = pd.DataFrame({f"k{i}": rng.integers(0, 20_000, n).astype(float) for i in range(5)})
    frame["k0"] = frame["k0"].where(rng.random(n) > 0.1)  # missing values sort last
    frame["text"] = pd.Series(rng.choice(["a", "b", None], n), dtype="string")
    frame["v"] = rng.integers(0, 3, n).astype(float)
    frame = pd.concat([frame, frame.sample(500, random_state=1)], ignore_index=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for key in (["k0", "k1", "k2", "k3", "k4"], ["text", "v"]):
        expected = _stock_order(frame, key).index.to_numpy()
        assert (_unique_sorted(table, key) == expected).all()
