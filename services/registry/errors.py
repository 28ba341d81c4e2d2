"""The registry's errors and, in ``ANSWERS``, the HTTP answer each one gets.

    ServiceError (shared.errors)
    └── RegistryError
        ├── Problem           422  a refused change; names the offending field
        ├── ReferenceInvalid  422  an uploaded file does not fit the schema; one ColumnProblem
        │                          per bad column
        ├── ProfileProblem         a column that cannot be profiled (becomes ReferenceInvalid)
        └── TooLarge          413  an upload over ``max_reference_bytes``

Two errors from the libraries answer here too: SQLAlchemy's ``IntegrityError`` (409: a
concurrent request created the record first) and FastAPI's ``RequestValidationError`` (422,
also when the refused value is NaN or infinite, which FastAPI's own handler answers with 500).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError

from shared.errors import Answer, Answers, ServiceError

__all__ = [
    "ANSWERS",
    "ColumnProblem",
    "Problem",
    "ProfileProblem",
    "ReferenceInvalid",
    "RegistryError",
    "TooLarge",
]


class RegistryError(ServiceError):
    """Anything the registry refuses."""


class Problem(RegistryError, ValueError):
    """A refused change; ``field`` is the dotted path of the offending input (422 body)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class ColumnProblem:
    """Everything wrong with one column, as the 422 body reports it."""

    column: str
    reason: str
    first_bad_row: int | None = None
    value: str | None = None
    bad_rows: int = 0

    def as_detail(self) -> dict[str, Any]:
        where = f"row {self.first_bad_row}: " if self.first_bad_row is not None else ""
        more = f" ({self.bad_rows} bad rows)" if self.bad_rows > 1 else ""
        return {
            "loc": ["body", self.column],
            "msg": f"column {self.column!r}: {where}{self.reason}{more}",
            "type": "reference_invalid",
            "column": self.column,
            "first_bad_row": self.first_bad_row,
            "value": self.value,
            "bad_rows": self.bad_rows,
        }


class ReferenceInvalid(RegistryError, ValueError):
    """The file does not fit the system's schema; ``problems`` has one entry per column."""

    def __init__(self, problems: Sequence[ColumnProblem]) -> None:
        super().__init__("; ".join(p.as_detail()["msg"] for p in problems))
        self.problems = list(problems)


class ProfileProblem(RegistryError, ValueError):
    """A column that cannot be profiled (no values, too many categories)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


class TooLarge(RegistryError):
    """The body exceeded ``max_reference_bytes``."""


def _problem(exc: Problem) -> Any:
    loc: list[str] = ["body", *exc.field.split(".")]
    return {"detail": [{"loc": loc, "msg": f"{exc.field}: {exc.reason}", "type": "value_error"}]}


def _json_safe(value: Any) -> Any:
    """The error details with non-finite numbers (the refused input) as text: JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


_CONFLICT = {"detail": "conflict: the record was created concurrently; read it and retry"}

ANSWERS: Answers = {
    Problem: Answer(status.HTTP_422_UNPROCESSABLE_CONTENT, _problem),
    ReferenceInvalid: Answer(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        lambda exc: {"detail": [p.as_detail() for p in exc.problems]},
    ),
    TooLarge: Answer(status.HTTP_413_CONTENT_TOO_LARGE),
    IntegrityError: Answer(status.HTTP_409_CONFLICT, lambda _exc: _CONFLICT),
    RequestValidationError: Answer(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        lambda exc: {"detail": _json_safe(jsonable_encoder(exc.errors()))},
    ),
}
"""The registry's errors as HTTP answers (``shared.errors.install_answers``)."""
