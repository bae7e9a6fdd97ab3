"""One partition's bytes and its DVC record, without pandas' per-column copies and without
DVC collecting every stage of the repository.

:func:`canonical_table` builds exactly the rows :func:`driftline.versioning.canonical_frame`
defines (the same columns, types, de-duplication and order) as an Arrow table, and
:func:`write_parquet` writes it with the schema and options ``DataFrame.to_parquet`` used, so
a day gives the same bytes, hence the same content hash, as before. :func:`dvc_add_one`
records and caches one file through DVC's own stage and output code (the same ``.dvc``
file ``dvc add`` writes) and pushes only its object.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftline.packs import Pack

PARQUET_COMPRESSION = "zstd"


@cache
def _schema(columns: tuple[tuple[str, bool], ...]) -> pa.Schema:
    """The Arrow schema (with pandas' metadata) ``to_parquet`` gave the canonical frame."""
    empty = pd.DataFrame({name: pd.Series(dtype="string" if text else "float64")
                          for name, text in columns})
    return pa.Schema.from_pandas(empty, preserve_index=False)


def _text(values: pd.Series) -> pa.Array:
    """Text as Arrow strings; values that are not text go through ``astype("string")``
    (which writes numbers and times as ``str`` does)."""
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        try:
            return pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass
    return pa.array(values.astype("string"), type=pa.string(), from_pandas=True)


def _number(values: pd.Series) -> pa.Array:
    return pa.array(pd.to_numeric(values).astype("float64").to_numpy(), from_pandas=True)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Each value's dense rank among the column's values (ties equal, missing last) and how
    many ranks there are."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    ranks = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense")
    ranks = ranks.to_numpy().astype(np.int64) - 1
    missing = int(ranks.max()) + 1 if len(ranks) else 0
    indices = encoded.indices.fill_null(0).to_numpy().astype(np.int64)
    codes = ranks[indices] if len(ranks) else np.zeros(len(indices), dtype=np.int64)
    codes[encoded.indices.is_null().to_numpy(zero_copy_only=False)] = missing
    return codes, missing + 1


def _sorted_by_key(table: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A stable ascending order of ``table`` by ``key`` (missing values last), and whether
    each row in that order has the same key as the row before it.

    The key's columns become one int64 of dense ranks when their counts fit, sorted with one
    stable argsort; otherwise Arrow's multi-column sort."""
    codes = [_codes(table[c]) for c in key]
    if float(np.prod([float(n) for _, n in codes])) < 2.0 ** 62:
        composite = np.zeros(table.num_rows, dtype=np.int64)
        for code, n in codes:
            composite = composite * n + code
        order = np.argsort(composite, kind="stable")
        ordered = composite[order]
        return order, ordered[1:] == ordered[:-1]
    order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_end") for c in key]
                            ).to_numpy()
    same = np.ones(max(table.num_rows - 1, 0), dtype=bool)
    for code, _ in codes:
        ordered = code[order]
        same &= ordered[1:] == ordered[:-1]
    return order, same


def _unique_sorted(table: pa.Table, key: list[str]) -> np.ndarray:
    """Row indices of ``table`` without repeated rows (the first kept), stably sorted by
    ``key`` with missing values last: what ``drop_duplicates().sort_values(key,
    kind="stable", na_position="last")`` selects.

    A repeated row has its first occurrence's key, so after the stable sort it sits in the
    same run of equal keys, after it: only rows in such runs are compared whole (by pandas,
    whose equality ``drop_duplicates`` used).
    """
    order, same_as_previous = _sorted_by_key(table, key)
    if not same_as_previous.any():
        return order
    run = np.concatenate([[0], np.cumsum(~same_as_previous)])
    in_run = np.zeros(len(order), dtype=bool)
    in_run[1:] |= same_as_previous
    in_run[:-1] |= same_as_previous
    candidates = np.flatnonzero(in_run)
    rows = table.take(order[candidates]).to_pandas().assign(__run=run[candidates])
    repeated = np.zeros(len(order), dtype=bool)
    repeated[candidates] = rows.duplicated().to_numpy()
    return order[~repeated]


def canonical_table(pack: Pack, df: pd.DataFrame) -> pa.Table:
    """The canonical rows of ``df`` (see :func:`driftline.versioning.canonical_frame`) as an
    Arrow table with the schema the partition file stores.

    :param pack: the pack whose declared columns, types and key define the rows.
    :param df: the landing file's rows.
    """
    columns = tuple((c, pack.is_text(c)) for c in pack.spec.columns)
    schema = _schema(columns)
    arrays = []
    for name, text in columns:
        if name not in df.columns:
            arrays.append(pa.nulls(len(df), pa.string() if text else pa.float64()))
        else:
            arrays.append(_text(df[name]) if text else _number(df[name]))
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.take(_unique_sorted(table, pack.sort_key))


def write_parquet(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` as ``DataFrame.to_parquet(compression="zstd")`` did,
    atomically (aside, then renamed).

    :param table: the rows, from :func:`canonical_table`.
    :param target: the partition file.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    os.replace(tmp, target)


def dvc_add_one(root: Path, target: Path) -> str:
    """Track ``target`` with DVC, cache it and push its object to the default remote, as
    ``dvc add`` + ``dvc push <target>`` do for one file; return its md5.

    ``Repo.add`` and ``Repo.push`` first collect every stage of the repository (each
    ``.dvc`` file parsed), so their cost grows with the partitions; this builds the one
    stage with DVC's own code and writes the same ``.dvc`` file. Overlaps with other outputs
    are not checked: a partition path is never another stage's output.

    :param root: the DVC repository.
    :param target: the file, inside ``root``.
    """
    from dvc.repo import Repo
    from dvc.utils import resolve_paths

    with Repo(str(root)) as repo, repo.lock:
        path, wdir, out = resolve_paths(repo, str(target))
        stage = repo.stage.create(single_stage=True, validate=False, fname=path, wdir=wdir,
                                  outs=[out], force=True)
        stage.add_outs()
        stage.dump()
        (output,) = stage.outs
        try:
            result = repo.cloud.push([output.hash_info])
        except OSError as exc:  # PermissionError: the remote refused the credentials
            remote = repo.config["remote"][repo.config["core"]["remote"]]["url"]
            raise OSError(f"could not push {target} to the DVC remote {remote}: "
                          f"{type(exc).__name__} {exc}; an s3:// remote takes its key and "
                          "secret from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from exc
        if result.failed:
            raise OSError(f"could not push {target} to the DVC remote: {result.failed}")
        return str(output.hash_info.value)
