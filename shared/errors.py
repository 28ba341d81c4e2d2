"""The root of every service's error tree and the one handler that answers it over HTTP.

Each service's ``errors.py`` draws its tree under :class:`ServiceError` and lists, in one
``ANSWERS`` table, the status, body and headers each class answers with; ``install_answers``
registers that table on the app (ingest's fast path calls :func:`respond` itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

__all__ = [
    "Answer",
    "Answers",
    "ServiceError",
    "detail",
    "install_answers",
    "respond",
    "status_of",
]


class ServiceError(Exception):
    """Something a service refuses or cannot do; its ``errors.py`` table says how to answer."""


def detail(exc: BaseException) -> Any:
    """The body most errors answer with: ``{"detail": "<the message>"}``."""
    return {"detail": str(exc)}


@dataclass(frozen=True, slots=True)
class Answer:
    """How one class of error answers: a status (or the error's own), a JSON body, headers."""

    status: int | Callable[[Any], int]
    body: Callable[[Any], Any] = detail
    headers: Callable[[Any], dict[str, str]] | None = None


Answers = Mapping[type[Exception], Answer]
"""A service's table: the most specific class in an error's MRO decides its answer."""

Render = Callable[[Any, int, dict[str, str] | None], Response]


def _json(content: Any, status: int, headers: dict[str, str] | None) -> Response:
    return JSONResponse(content, status, headers)


def status_of(answers: Answers, exc: BaseException) -> int:
    """The status the table answers ``exc`` with (for pages that show the error themselves)."""
    answer = _answer(answers, exc)
    return answer.status if isinstance(answer.status, int) else answer.status(exc)


def respond(answers: Answers, exc: BaseException, render: Render = _json) -> Response:
    """The HTTP answer the table gives ``exc``."""
    answer = _answer(answers, exc)
    headers = answer.headers(exc) if answer.headers is not None else None
    return render(answer.body(exc), status_of(answers, exc), headers)


def _answer(answers: Answers, exc: BaseException) -> Answer:
    """The entry of the most specific class of ``exc``; LookupError when none is listed."""
    for cls in type(exc).__mro__:
        answer = answers.get(cls)
        if answer is not None:
            return answer
    raise LookupError(f"no answer for {type(exc).__name__}") from exc


def install_answers(app: FastAPI, answers: Answers) -> None:
    """One exception handler for every class of the table."""

    async def handler(_request: Request, exc: Exception) -> Response:
        return respond(answers, exc)

    for cls in answers:
        app.add_exception_handler(cls, handler)
