"""Exponential backoff with jitter that never retries sooner than ingest's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delay before the next attempt after ``failures`` consecutive retryable failures.

    The n-th delay is drawn uniformly from [d/2, d] with d = min(maximum, initial * 2**(n-1))
    ("equal jitter": clients that failed together do not come back together, yet the delay
    still grows). A Retry-After from ingest is a floor, plus up to 10% jitter.
    """

    def __init__(
        self, initial: float, maximum: float, *, rng: Callable[[], float] = random.random
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng

    def next_delay(self, retry_after: float | None = None) -> float:
        self.failures += 1
        ceiling = min(self.maximum, self.initial * 2 ** min(self.failures - 1, 62))
        delay: float = ceiling / 2 + self._rng() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, retry_after * (1.0 + 0.1 * self._rng()))
        return delay

    def reset(self) -> None:
        self.failures = 0
