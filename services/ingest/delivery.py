"""Following deliveries Kafka did not acknowledge in time, until it settles each record.

Ingest answered 503 for them, but an idempotent producer keeps retrying what it handed to the
broker, so they may still be written. Their duplicate-store claims stay "in flight" (a retry
gets 503 rather than a second copy on the topic) until the outcome is known: written records
become duplicates for any retry, the others are released so a retry delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from shared.bus.kafka import Outcome

from .dedup import Claim, DedupStore
from .metrics import IngestMetrics

__all__ = ["DeliveryFollower"]

log = logging.getLogger(__name__)


class DeliveryFollower:
    def __init__(self, dedup: DedupStore | None, metrics: IngestMetrics) -> None:
        self._dedup = dedup
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(
        self,
        delivery: asyncio.Future[list[Outcome]],
        seq: int,
        claims: Sequence[Sequence[Claim]],
    ) -> None:
        """``claims[i]``: the claims of the events in the i-th record of ``delivery``."""
        task = asyncio.create_task(self._settle_when_known(delivery, seq, claims))
        self._tasks.add(task)
        self._metrics.pending_deliveries.set(len(self._tasks))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._metrics.pending_deliveries.set(len(self._tasks))

    async def _settle_when_known(
        self,
        delivery: asyncio.Future[list[Outcome]],
        seq: int,
        claims: Sequence[Sequence[Claim]],
    ) -> None:
        outcomes = await asyncio.shield(delivery)
        undelivered = [
            claim
            for record, outcome in zip(claims, outcomes, strict=True)
            if isinstance(outcome, BaseException)
            for claim in record
        ]
        total = sum(len(record) for record in claims)
        log.info(
            "ingest: late delivery settled: %d of %d events written",
            total - len(undelivered),
            total,
        )
        if self._dedup is not None:
            self._dedup.settle(seq, undelivered)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Stop following: unsettled claims stay in flight until this instance's lease ends."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
