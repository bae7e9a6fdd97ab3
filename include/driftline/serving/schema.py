"""The request and response of ``POST /predict``, generated from the pack's spec.

Each row carries the pack's request columns (:attr:`~driftline.packs.Pack.request_columns`):
the time column (a time in the pack's format: the prediction log is partitioned by its local
date), the inputs, and the optional id column. Every field but the id must be present;
unknown fields are rejected. Text columns are strings, numeric ones JSON numbers (strict: no
numeric strings, no booleans, finite); a column the spec declares ``nullable`` may be
``null``.

Bodies are decoded and validated in one pass by msgspec, straight from bytes: no
intermediate dicts and no pydantic models on the request path.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from driftline.packs import Pack
from driftline.packs.timeline import RowClock

Number = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


def _field(pack: Pack, column: str) -> tuple:
    text = pack.is_text(column)
    kind = Text if text else Number
    if column == pack.id_column:
        return (column, kind | None, None)
    if column == pack.time_column or not pack.spec.columns[column].nullable:
        return (column, kind)
    return (column, kind | None)


def input_row_type(pack: Pack) -> type:
    """The msgspec struct of one request row of ``pack``."""
    return msgspec.defstruct(f"{pack.name.title()}Row",
                             [_field(pack, c) for c in pack.request_columns],
                             forbid_unknown_fields=True)


def prediction_key(pack: Pack) -> str:
    """The response field holding the model's output: ``<label name>_probability`` for
    binary packs, ``<label name>`` for regression packs."""
    name = pack.spec.label.name
    return f"{name}_probability" if pack.task == "binary" else name


def prediction_items(pack: Pack, outputs: list[float]) -> list[dict]:
    """The ``predictions`` list of a response."""
    key = prediction_key(pack)
    if pack.task == "binary":
        name = pack.spec.label.name
        return [{key: p, name: p >= 0.5} for p in outputs]
    return [{key: p} for p in outputs]


@dataclass
class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, the ``field`` at fault and why."""

    status: int
    field: str
    reason: str

    def body(self) -> dict:
        return {"detail": f"{self.field}: {self.reason}",
                "errors": [{"field": self.field, "reason": self.reason}]}


_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(missing required|unknown) field `(?P<name>[^`]+)`")


class RequestDecoder:
    """Decode and validate ``POST /predict`` bodies: ``{"rows": [row, ...]}`` with 1 to
    ``max_rows`` rows of the pack's request columns.

    :param pack: the served pack.
    :param max_rows: the batch size limit; a larger batch is answered with 413.
    """

    def __init__(self, pack: Pack, max_rows: int):
        self.pack = pack
        self.max_rows = max_rows
        self.columns = pack.request_columns
        self.clock = RowClock(pack.spec.time)
        self.row_type = input_row_type(pack)
        request = msgspec.defstruct(
            "PredictRequest",
            [("rows", Annotated[types.GenericAlias(list, (self.row_type,)),  # list[row_type]
                                msgspec.Meta(min_length=1, max_length=max_rows)])],
            forbid_unknown_fields=True)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(request)

    def decode(self, body: bytes) -> tuple[list, list[str]]:
        """The rows of ``body`` and each row's local event date.

        :raises RequestError: malformed JSON, a schema violation (naming the field, e.g.
            ``rows[3].distance``), a row whose time does not parse (422), or a batch over
            ``max_rows`` (413).
        """
        try:
            rows = self._decoder.decode(body).rows
        except msgspec.ValidationError as exc:
            raise self._schema_error(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise RequestError(422, "body", f"malformed JSON: {exc}") from None
        return rows, self.event_dates(rows)

    def event_dates(self, rows: list) -> list[str]:
        """The local date of each row's time.

        :raises RequestError: the first row whose time does not parse.
        """
        time = self.pack.time_column
        dates = []
        for i, row in enumerate(rows):
            value = getattr(row, time)
            try:
                dates.append(self.clock.date(value))
            except ValueError:
                expected = self.pack.spec.time.format or "an ISO 8601 time"
                raise RequestError(422, f"rows[{i}].{time}", f"{value!r} is not "
                                                             f"{expected}") from None
        return dates

    def _schema_error(self, message: str) -> RequestError:
        match = _AT.match(message)
        if match is None:  # _AT matches any text
            raise ValueError(f"unexpected msgspec error message: {message!r}")
        reason, path = match["reason"], match["path"] or ""
        named = _NAMED.search(reason)
        if named:
            path = f"{path}.{named['name']}" if path else named["name"]
        if path == "rows" and "length <=" in reason:
            return RequestError(413, "rows", f"batch is over the limit of {self.max_rows} rows")
        return RequestError(422, path or "body", reason)

    def columns_of(self, rows: list) -> dict[str, Sequence]:
        """Decoded rows as one sequence per request column."""
        astuple = msgspec.structs.astuple
        if len(rows) == 1:
            return {c: (v,) for c, v in zip(self.columns, astuple(rows[0]), strict=True)}
        values = [astuple(row) for row in rows]  # then a list per column: 2x zip(*values)
        return {c: [row[i] for row in values] for i, c in enumerate(self.columns)}
