"""Per-system rate limits: a token bucket per AI system, in events per second.

A request takes tokens for all its events at once and may drive the bucket below zero
(a batch larger than the burst is admitted when the bucket is positive); while the bucket is
negative the system's requests get 429 with the seconds until it is positive again. Limits
are per ingest instance: behind a load balancer over N instances a system gets N times it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(
        self,
        *,
        events_per_s: float | None,
        burst_s: float = 1.0,
        overrides: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = events_per_s
        self._overrides = dict(overrides or {})
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # system -> (tokens, at)

    def rate(self, system_id: str) -> float | None:
        rate = self._overrides.get(system_id, self._default)
        return rate if rate is not None and rate > 0 else None

    def admit(self, counts: Mapping[str, int]) -> int | None:
        """Take tokens for ``counts`` (events per system); None, or seconds to wait (429)."""
        now = self._clock()
        updated: dict[str, tuple[float, float]] = {}
        limited = False
        wait = 0.0
        for system_id, count in counts.items():
            rate = self.rate(system_id)
            if rate is None:
                continue
            capacity = rate * self._burst_s
            tokens, at = self._buckets.get(system_id, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens <= 0:
                limited = True
                wait = max(wait, -tokens / rate)
            updated[system_id] = (tokens - count, now)
        if limited:
            for system_id, (tokens, _at) in updated.items():  # refill only, take nothing
                self._buckets[system_id] = (tokens + counts[system_id], now)
            return max(1, math.ceil(wait))
        self._buckets.update(updated)
        return None
