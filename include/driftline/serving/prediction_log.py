"""The prediction log: every served row, its prediction and the model that made it.

A model server appends JSON lines to
``<serving_dir>/predictions/date=<event date>/<slot>-<pid>.jsonl`` (one file per process,
so writers never share a file). Writing happens on a background thread fed by a bounded
queue: a request never waits for the disk, and when the queue is full the batch is dropped
and counted instead. The log is bounded on disk too: partitions more than ``keep_days`` older
than the newest event date served are deleted, and past ``max_bytes`` in all new rows are
dropped and counted. The monitor reads the log back with :func:`read_served_inputs`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec
import pandas as pd

from driftline.packs import Pack
from driftline.serving.paths import predictions_dir

log = logging.getLogger(__name__)

PREDICTION = "prediction"
MODEL_FIELDS = ["model_version", "slot", "served_at"]
_STOP = object()


class PredictionLogger:
    """Append served predictions as JSON lines, off the request path.

    :param serving_dir: the serving directory (``settings.serving_dir``).
    :param slot: the slot this server runs in.
    :param model_name: the served model's name.
    :param model_version: the served model's version.
    :param max_batches: queue bound; batches beyond it are dropped and counted.
    :param keep_days: partitions kept, counted back from the newest event date written.
    :param max_bytes: the whole log's size limit; rows past it are dropped and counted.
    """

    def __init__(self, serving_dir: Path, slot: str, model_name: str, model_version: str,
                 max_batches: int = 1000, start: bool = True, keep_days: int = 400,
                 max_bytes: int = 2 * 2**30):
        self.root = predictions_dir(serving_dir)
        self.slot = slot
        self.model_name = model_name
        self.model_version = model_version
        self.queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self.written_rows = 0
        self.full = False
        self.dropped_rows = 0
        self.failed_rows = 0
        self._count_lock = threading.Lock()
        self.keep_days = keep_days
        self.max_bytes = max_bytes
        self._files: dict[str, BinaryIO] = {}
        self._newest: str | None = None
        self._bytes = self._disk_usage()
        self._encode = msgspec.json.Encoder().encode
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        if start:
            self._thread.start()

    def submit(self, rows: Sequence, outputs: Sequence[float], dates: Sequence[str],
               served_at: str | None = None) -> bool:
        """Queue one served batch; never blocks.

        :param rows: the served rows (decoded request structs, or dicts).
        :param outputs: the model's output for each row.
        :param dates: each row's local event date, ``YYYY-MM-DD`` (its partition).
        :return: False when the queue was full and the batch was dropped.
        """
        served_at = served_at or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        try:
            self.queue.put_nowait((rows, outputs, dates, served_at))
            return True
        except queue.Full:
            with self._count_lock:
                self.dropped_rows += len(rows)
            return False

    def stats(self) -> dict:
        """Rows written, dropped (queue full) and failed (disk errors), batches queued."""
        return {"written_rows": self.written_rows, "dropped_rows": self.dropped_rows,
                "failed_rows": self.failed_rows, "queued_batches": self.queue.qsize()}

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close the files."""
        if self._thread.is_alive():
            try:
                self.queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.error("prediction log queue stayed full; %d batches not written",
                          self.queue.qsize())
            self._thread.join(timeout)
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    # -- writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self.queue.get()
            items = [item]
            while item is not _STOP:  # drain what is already waiting, then flush once
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
            for batch in items:
                if batch is not _STOP:
                    self._write(*batch)
            for fh in self._files.values():
                fh.flush()
            if items[-1] is _STOP:
                return

    def _write(self, rows: Sequence, outputs: Sequence[float], dates: Sequence[str],
               served_at: str) -> None:
        lines: dict[str, list[bytes]] = {}
        extra = self._encode({"model_name": self.model_name, "model_version": self.model_version,
                              "slot": self.slot, "served_at": served_at})[1:]
        for row, output, date in zip(rows, outputs, dates, strict=True):
            # the row's own JSON object, extended in place: {...row, "prediction": .., ...}
            line = b'%s,"prediction":%s,%s' % (self._encode(row)[:-1],
                                               repr(float(output)).encode(), extra)
            lines.setdefault(date, []).append(line)
        for date, day_lines in lines.items():
            data = b"\n".join(day_lines) + b"\n"
            if self._bytes + len(data) > self.max_bytes:
                with self._count_lock:
                    self.dropped_rows += len(day_lines)
                if not self.full:
                    log.error("prediction log is at its %d MB limit; new rows are dropped",
                              self.max_bytes // 2**20)
                self.full = True
                continue
            try:
                self._file(date).write(data)
                self._bytes += len(data)
                self.written_rows += len(day_lines)
            except OSError as exc:
                self.failed_rows += len(day_lines)
                log.error("prediction log for %s not written: %s", date, exc)

    def _disk_usage(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("date=*/*.jsonl"))

    def _file(self, date: str) -> BinaryIO:
        fh = self._files.get(date)
        if fh is None:
            if self._newest is None or date > self._newest:
                self._newest = date
                self._expire(date)
            path = self.root / f"date={date}" / f"{self.slot}-{os.getpid()}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = self._files[date] = open(path, "ab")  # noqa: SIM115
        return fh

    def _expire(self, newest: str) -> None:
        """Delete partitions over ``keep_days`` older than ``newest``, the newest date
        written."""
        oldest = (dt.date.fromisoformat(newest)
                  - dt.timedelta(days=self.keep_days - 1)).isoformat()
        for partition in self.root.glob("date=*"):
            date = partition.name.removeprefix("date=")
            if date < oldest:
                fh = self._files.pop(date, None)
                if fh is not None:
                    fh.close()
                shutil.rmtree(partition, ignore_errors=True)
                log.info("prediction log: deleted %s (older than %d days)", partition.name,
                         self.keep_days)
        self._bytes = self._disk_usage()


def read_served_inputs(pack: Pack, serving_dir: Path, start: dt.date,
                       end: dt.date) -> pd.DataFrame:
    """Served rows whose event date is in ``[start, end]``, for drift monitoring.

    A line still being written (no newline yet) is skipped, so is an unreadable one.

    :param serving_dir: the pack's serving directory.
    :return: the pack's request columns plus ``prediction``, ``model_version``, ``slot``
        and ``served_at``; no rows when nothing was served.
    """
    root = predictions_dir(serving_dir)
    columns = [*pack.request_columns, PREDICTION, *MODEL_FIELDS]
    records = []
    day = start
    while day <= end:
        for path in sorted((root / f"date={day.isoformat()}").glob("*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.endswith("\n"):
                        continue
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        log.warning("%s:%d: not a JSON line; skipped", path.name, number)
        day += dt.timedelta(days=1)
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in columns:
        if column in MODEL_FIELDS or (column in pack.spec.columns and pack.is_text(column)):
            frame[column] = frame[column].astype(object)
        else:
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame
