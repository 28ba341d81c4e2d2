"""Ingest's errors and, in ``ANSWERS``, the HTTP answer each one gets.

    ServiceError (shared.errors)
    └── IngestError
        ├── Unauthorized      401  no ingest API key, or an unknown or revoked one
        ├── BodyError         400  the body as a whole is unusable (not JSON, bad gzip, ...);
        │                          413 over a limit, 415 an unsupported Content-Encoding
        ├── RecordsRefused    422  no record was good (or ``atomic``: one was bad); 403 when
        │                          only the key's scope refused them; the body lists each one
        ├── RateLimited       429  the system is over its rate limit (Retry-After)
        ├── Unavailable       503  the registry view is loading, Kafka or the duplicate store
        │                          did not answer (Retry-After)
        └── DedupUnavailable       the duplicate store could not be reached (answered as
                                   Unavailable)

The routes and the fast path share one handler (``api._ingest``), which answers every
``IngestError`` through the table with :func:`shared.errors.respond`.
"""

from __future__ import annotations

from typing import Any

from shared.errors import Answer, Answers, ServiceError

__all__ = [
    "ANSWERS",
    "BodyError",
    "DedupUnavailable",
    "IngestError",
    "RateLimited",
    "RecordsRefused",
    "Unauthorized",
    "Unavailable",
]


class IngestError(ServiceError):
    """Anything ingest refuses or cannot do."""


class Unauthorized(IngestError):
    """No ingest API key, or one ingest does not know (any more)."""


class BodyError(IngestError):
    """The body as a whole is unusable; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RecordsRefused(IngestError):
    """No record goes on; ``rejected`` names each bad one (index, field, reason)."""

    def __init__(self, rejected: list[dict[str, Any]], *, key_scope_only: bool) -> None:
        super().__init__(f"{len(rejected)} records refused")
        self.rejected = rejected
        self.key_scope_only = key_scope_only


class RateLimited(IngestError):
    """The system sent more than its rate limit allows; retry after ``retry_after`` s."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(IngestError):
    """Something ingest needs did not answer; retry after ``retry_after`` s."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DedupUnavailable(IngestError):
    """The duplicate store could not be reached; the request should be retried later."""


def _retry_after(exc: RateLimited | Unavailable) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)}


def _refused(exc: RecordsRefused) -> Any:
    """The shape of a partial refusal (rejected, duplicates), plus detail as before."""
    return {"detail": exc.rejected, "accepted": 0, "duplicates": [], "rejected": exc.rejected}


ANSWERS: Answers = {
    Unauthorized: Answer(401, headers=lambda _exc: {"WWW-Authenticate": "Bearer"}),
    BodyError: Answer(lambda exc: exc.status),
    RecordsRefused: Answer(lambda exc: 403 if exc.key_scope_only else 422, _refused),
    RateLimited: Answer(429, headers=_retry_after),
    Unavailable: Answer(503, headers=_retry_after),
}
"""Ingest's errors as HTTP answers (``shared.errors.respond`` in ``api._ingest``)."""
