"""Event-time tumbling window arithmetic (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["closable_until", "window_start"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(ts: datetime, size_s: int) -> datetime:
    """Start of the tumbling window of ``size_s`` seconds holding ``ts`` (aligned to epoch)."""
    seconds = int((ts - _EPOCH).total_seconds() // size_s) * size_s
    return _EPOCH + timedelta(seconds=seconds)


def closable_until(
    *,
    max_event_ts: datetime | None,
    lateness_s: float,
    idle: bool,
    now: datetime,
) -> datetime | None:
    """The watermark: every window ending at or before it may be closed.

    Normally the newest event time seen minus the allowed lateness; when the system has been
    idle, wall-clock time, so a stream that stops still has its last windows evaluated.
    """
    if idle:
        return now
    if max_event_ts is None:
        return None
    return max_event_ts - timedelta(seconds=lateness_s)
