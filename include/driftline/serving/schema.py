"""The request body of ``POST /predict``, built from the model's raw input columns.

Each row carries exactly :data:`~driftline.features.INPUT_COLUMNS`: every field must be
present, unknown fields are rejected. ``carrier``/``origin``/``dest`` are strings, the other
fields are JSON numbers (strict: no numeric strings, no booleans, finite) and may be ``null``
(missing, as in training) except ``year``/``month``/``day``, which must form a calendar date
(the prediction log is partitioned by it).

Bodies are decoded and validated in one pass by msgspec, straight from bytes: no
intermediate dicts and no pydantic models on the request path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np

from driftline.features import CATEGORICAL_FEATURES, INPUT_COLUMNS, as_float, calendar_date_mask

DATE_FIELDS = ("year", "month", "day")

Number = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def _field_type(column: str):
    if column in CATEGORICAL_FEATURES:
        return Text
    if column in DATE_FIELDS:
        return Number
    return Number | None


InputRow = msgspec.defstruct(
    "InputRow", [(column, _field_type(column)) for column in INPUT_COLUMNS],
    forbid_unknown_fields=True)
"""One raw flight row as a request supplies it."""


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
    """Decode and validate ``POST /predict`` bodies: ``{"rows": [InputRow, ...]}`` with
    1 to ``max_rows`` rows.

    :param max_rows: the batch size limit; a larger batch is answered with 413.
    """

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        request = msgspec.defstruct(
            "PredictRequest",
            [("rows", Annotated[list[InputRow], msgspec.Meta(min_length=1, max_length=max_rows)])],
            forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(request)

    def decode(self, body: bytes) -> list:
        """The rows of ``body``.

        :raises RequestError: malformed JSON, a schema violation (naming the field, e.g.
            ``rows[3].distance``), a row that is not a calendar date (422), or a batch over
            ``max_rows`` (413).
        """
        try:
            rows = self._decoder.decode(body).rows
        except msgspec.ValidationError as exc:
            raise self._schema_error(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise RequestError(422, "body", f"malformed JSON: {exc}") from None
        check_dates(rows)
        return rows

    def _schema_error(self, message: str) -> RequestError:
        match = _AT.match(message)
        reason, path = match["reason"], match["path"] or ""
        named = _NAMED.search(reason)
        if named:
            path = f"{path}.{named['name']}" if path else named["name"]
        if path == "rows" and "length <=" in reason:
            return RequestError(413, "rows", f"batch is over the limit of {self.max_rows} rows")
        return RequestError(422, path or "body", reason)


def columns_of(rows: list) -> dict[str, list]:
    """Decoded rows as one list per input column."""
    values = zip(*(msgspec.structs.astuple(row) for row in rows), strict=True)
    return dict(zip(INPUT_COLUMNS, values, strict=True))


def check_dates(rows: list) -> None:
    """:raises RequestError: the first row whose year/month/day is not a calendar date."""
    year, month, day = (as_float([getattr(r, f) for r in rows]) for f in DATE_FIELDS)
    bad = np.flatnonzero(~calendar_date_mask(year, month, day))
    if bad.size:
        i = int(bad[0])
        raise RequestError(422, f"rows[{i}]", f"year/month/day {year[i]:g}/{month[i]:g}/"
                                              f"{day[i]:g} is not a calendar date")
