"""Exceptions the SDK raises to callers and hands to ``on_error``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ClientClosedError",
    "ConfigurationError",
    "DeliveryError",
    "EventKind",
    "InvalidEventError",
    "RejectedEvent",
    "SpoolError",
    "WatchkeeperError",
]

EventKind = Literal["prediction", "outcome"]


class WatchkeeperError(Exception):
    """Base of every error this SDK raises."""


class InvalidEventError(WatchkeeperError, ValueError):
    """Raised by ``log_*`` when an event could never be accepted (caught before it is queued)."""


class ClientClosedError(WatchkeeperError, RuntimeError):
    """Raised by ``log_*`` after ``close()``: the event was not accepted."""


class SpoolError(WatchkeeperError, OSError):
    """Raised by ``log_*`` when the queue is full and the spill to disk failed.

    The event was not accepted; events queued before it are kept.
    """


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """One event ingest refused, as it was sent, with the reason ingest gave."""

    event: Mapping[str, Any]
    reason: str
    field: str | None = None

    @property
    def event_id(self) -> str | None:
        value = self.event.get("event_id")
        return value if isinstance(value, str) else None


class DeliveryError(WatchkeeperError):
    """Ingest refused events for good (4xx other than 408/429): they are reported, not retried.

    Handed to the client's ``on_error`` callback from the background sender.
    ``status_code`` is the HTTP status (202 when only some events of a batch were refused).
    """

    def __init__(
        self,
        kind: EventKind,
        status_code: int | None,
        detail: str,
        rejected: Sequence[RejectedEvent],
    ) -> None:
        super().__init__(
            f"ingest refused {len(rejected)} {kind} event(s)"
            f" (HTTP {status_code if status_code is not None else '-'}): {detail}"
        )
        self.kind: EventKind = kind
        self.status_code = status_code
        self.detail = detail
        self.rejected: tuple[RejectedEvent, ...] = tuple(rejected)


class ConfigurationError(WatchkeeperError):
    """Ingest cannot take events yet because of the client's setup or a change still on its
    way: wrong URL (404), unknown key (401), key not valid for the system (403), or a system
    ingest does not know yet (422 "unknown AI system"). The events are kept, spooled and
    retried with backoff; this error only reports the problem.

    Raised by ``check()``, and by ``flush()`` when it times out while the problem lasts.
    ``cause`` is one of ``not_found``, ``unauthorized``, ``forbidden``, ``unknown_system``,
    ``unreachable`` (``check()`` only).
    """

    def __init__(self, cause: str, status_code: int | None, detail: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.status_code = status_code
        self.detail = detail

    def copy(self) -> ConfigurationError:
        """A fresh exception with the same problem (to raise again without a growing trace)."""
        return ConfigurationError(self.cause, self.status_code, self.detail, str(self))
