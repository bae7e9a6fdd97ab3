"""The request body of ``POST /predict``, built from the model's raw input columns.

Each row carries exactly :data:`~driftline.features.INPUT_COLUMNS`: every field must be
present, unknown fields are rejected. ``carrier``/``origin``/``dest`` are strings, the other
fields are JSON numbers (strict: no numeric strings, no booleans) and may be ``null``
(missing, as in training) except ``year``/``month``/``day``, which must form a calendar date
(the prediction log is partitioned by it).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from driftline.features import CATEGORICAL_FEATURES, INPUT_COLUMNS

DATE_FIELDS = ("year", "month", "day")
BATCH_TOO_LARGE = "batch_too_large"

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Text = Annotated[str, Field(strict=True, min_length=1, max_length=64)]


class _RowBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _calendar_date(self):
        year, month, day = (getattr(self, name) for name in DATE_FIELDS)
        try:
            if not all(float(v).is_integer() for v in (year, month, day)):
                raise ValueError
            dt.date(int(year), int(month), int(day))
        except ValueError:
            raise ValueError(
                f"year/month/day {year}/{month}/{day} is not a calendar date") from None
        return self


def _field_type(column: str) -> tuple[Any, Any]:
    if column in CATEGORICAL_FEATURES:
        return (Text, ...)
    if column in DATE_FIELDS:
        return (Number, ...)
    return (Number | None, ...)


InputRow: type[BaseModel] = create_model(
    "InputRow", __base__=_RowBase, **{column: _field_type(column) for column in INPUT_COLUMNS})
"""One raw flight row as a request supplies it."""


def predict_request_model(max_rows: int) -> type[BaseModel]:
    """The ``POST /predict`` body: ``{"rows": [InputRow, ...]}`` with 1 to ``max_rows`` rows.

    A batch over ``max_rows`` fails with error type :data:`BATCH_TOO_LARGE` before its rows
    are validated (the app answers it with 413).
    """

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        rows: list[InputRow] = Field(min_length=1)  # type: ignore[valid-type]

        @field_validator("rows", mode="before")
        @classmethod
        def _not_too_many(cls, value):
            if isinstance(value, list) and len(value) > max_rows:
                raise PydanticCustomError(
                    BATCH_TOO_LARGE, "batch of {rows} rows is over the limit of {limit} rows",
                    {"rows": len(value), "limit": max_rows})
            return value

    return PredictRequest
