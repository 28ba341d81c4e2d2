"""The evaluator's consumer loop: the one place that decides the commit order.

Per polled batch: records an earlier checkpoint covers are skipped (a redelivery); the rest are
decoded (undecodable ones go to the DLQ, acknowledged before anything else), the reference
profiles they need are fetched, and ``StreamProcessor.apply`` joins and accumulates them in a
worker thread, writing join rows and evaluations into the store's open transaction. Every
``checkpoint_interval_s`` (or ``checkpoint_max_records`` records, on rebalance and on stop):

1. window state, watermarks and the consumed offsets are written in that same transaction,
   together with the evaluations and their outbox records, and committed (state checkpointed
   and results produced, atomically);
2. the outbox relay is woken to publish the evaluations;
3. the consumed offsets are committed to Kafka.

A crash anywhere loses only the open transaction; on restart each partition resumes from its
checkpoint, and records below the checkpointed offsets (Kafka's committed offsets can lag
behind them) are skipped, so nothing is applied twice or lost. Taking a partition bumps its
epoch in the database: a previous owner that still runs fails its next checkpoint (fenced).
CPU and database work run in worker threads so the consumer's heartbeats never starve.

While a batch is applied, the next one is polled and decoded in another thread
(``decode_ahead``; Arrow's parser runs outside the GIL). Nothing of it is applied before the
batch in hand is; a batch polled before a rebalance is dropped and its partitions rewound to
their committed offsets (its records come again), and after a failure it is dropped with the
rest of what the last checkpoint did not cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from shared.bus import (
    Bus,
    BusUnavailable,
    Consumer,
    Record,
    TopicPartition,
    dead_letter,
    start_consumer,
)
from shared.contracts import SystemSnapshot
from shared.outbox import OutboxRelay
from shared.registry_view import RegistryView

from .consumer import StreamProcessor
from .decoding import PartitionBatch, decode_records
from .metrics import EvaluatorMetrics
from .pacing import OutcomePacer, apply_batch
from .references import ReferenceCache
from .settings import Settings
from .store import Fenced

__all__ = ["EvaluatorRunner"]

log = logging.getLogger(__name__)

Decoded = tuple[dict[int, PartitionBatch], list[tuple[Record, str]]]


class _NotLoaded(Exception):
    """A partition without state in memory: its records are decoded when they are applied."""


@dataclass(slots=True)
class _Polled:
    records: list[Record]
    generation: int
    """Rebalances seen when the poll started."""
    decoded: Decoded | None = None

    def systems(self) -> set[str] | None:
        """Systems with events in the batch (None: not decoded yet, unknown)."""
        if self.decoded is None:
            return None if self.records else set()
        found: set[str] = set()
        for part in self.decoded[0].values():
            for events in (part.predictions, part.outcomes):
                if events is not None:
                    found.update(events.system_ids)
        return found


class EvaluatorRunner:
    def __init__(
        self,
        *,
        bus: Bus,
        settings: Settings,
        processor: StreamProcessor,
        view: RegistryView,
        references: ReferenceCache,
        relay: OutboxRelay,
        metrics: EvaluatorMetrics,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._processor = processor
        self._view = view
        self._references = references
        self._relay = relay
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._stopping = False
        self._changed = False
        self._last_checkpoint = time.monotonic()
        self._generation = 0
        self._pacer = (
            OutcomePacer(lead_s=settings.outcome_lead_s, max_held=settings.outcome_hold_max_events)
            if settings.outcome_hold_max_events
            else None
        )
        self.running = False
        self.partitions_assigned = False
        """True once the group handed this instance its share of the partitions (possibly
        none, with more instances than partitions); False again while a rebalance moves them."""
        self.checkpoints = 0

    @property
    def consumer(self) -> Consumer | None:
        """The running consumer (None while connecting or stopped), for its lag."""
        return self._consumer

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="evaluator:runner")

    async def stop(self) -> None:
        """Stop polling, checkpoint what was applied, commit, leave the group."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=30)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._view.loaded and not self._stopping:
            await self._view.wait_loaded(1.0)
        if self._stopping:
            return
        topics = self._bus.topics
        consumer = await start_consumer(
            lambda: self._bus.consumer(
                [topics.predictions, topics.outcomes],
                group_id=self._settings.group_id,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
            ),
            "evaluator",
        )
        self._consumer = consumer
        self.running = True
        failed = False
        ahead: asyncio.Task[_Polled] | None = None
        try:
            while not self._stopping:
                try:
                    if ahead is not None:
                        polled, ahead = await ahead, None
                    else:
                        polled = await self._poll(consumer)
                    async with self._lock:
                        if polled.generation != self._generation:
                            # polled before a rebalance: its records come again from the
                            # committed offsets, and so do the outcomes held back
                            self._drop_held()
                            await consumer.rewind()
                        elif polled.records:
                            if self._settings.decode_ahead:
                                ahead = asyncio.create_task(
                                    self._poll(consumer, self._start_offsets()),
                                    name="evaluator:decode-ahead",
                                )
                            await self._handle(polled)
                        elif self._holding():
                            await self._handle(polled)  # no predictions came: let them through
                        await self._idle(consumer, ahead)
                        if self._checkpoint_due(caught_up=not polled.records):
                            await self._checkpoint(consumer)
                    failed = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failed = True
                    await _dropped(ahead)
                    ahead = None
                    log.exception("evaluator: batch failed; resuming from the last checkpoint")
                    await self._recover(consumer, exc)
            await _dropped(ahead)
            ahead = None
            if not failed:
                try:
                    async with self._lock:
                        await self._checkpoint(consumer)
                except Exception:
                    # stopping must not fail: what the last checkpoint did not cover is
                    # replayed from it by the next owner of the partitions
                    log.exception("evaluator: final checkpoint failed; the next owner replays")
        finally:
            await _dropped(ahead)
            self.running = False
            self.partitions_assigned = False
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._processor.store.close)

    async def _poll(
        self, consumer: Consumer, start: Callable[[str, int], int | None] | None = None
    ) -> _Polled:
        """The next batch; with ``start`` (the next one, polled while the current one is
        applied) also decoded, unless a partition of it has no state in memory."""
        generation = self._generation
        records = await consumer.poll(
            timeout_s=self._settings.tick_s, max_records=self._settings.max_poll_records
        )
        polled = _Polled(records, generation)
        if start is not None and records:
            with contextlib.suppress(_NotLoaded):
                polled.decoded = await asyncio.to_thread(
                    decode_records, records, self._bus.topics, start
                )
        return polled

    def _start_offsets(self) -> Callable[[str, int], int | None]:
        """``start_offset`` as it is now, for decoding the next batch while the current one
        is applied: its records all come after the current batch's (no seek in between: a
        rebalance or a failure drops it), so today's offsets skip the same redeliveries."""
        offsets = {p: dict(state.offsets) for p, state in self._processor.partitions.items()}
        fenced = set(self._processor.fenced)

        def start(topic: str, partition: int) -> int | None:
            if partition in fenced:
                return None
            if partition not in offsets:
                raise _NotLoaded(partition)
            return offsets[partition].get(topic, 0)

        return start

    def _checkpoint_due(self, *, caught_up: bool = False) -> bool:
        """Every ``checkpoint_interval_s`` or ``checkpoint_max_records``, and as soon as a poll
        comes back empty (``caught_up``): what was applied becomes durable and its results go
        out now, not up to an interval later."""
        if self._processor.records_since_checkpoint >= self._settings.checkpoint_max_records:
            return True
        if not self._changed:
            return False
        elapsed = time.monotonic() - self._last_checkpoint
        return caught_up or elapsed >= self._settings.checkpoint_interval_s

    async def _recover(self, consumer: Consumer, exc: Exception) -> None:
        async with self._lock:
            await asyncio.to_thread(self._processor.abort)
            self._drop_held()
            if isinstance(exc, Fenced):
                self._processor.fenced.add(exc.partition)
            self._changed = False
        await asyncio.sleep(0.5)
        try:
            await consumer.rewind()
        except Exception as rewind_error:
            log.warning("evaluator: cannot rewind (%s)", rewind_error)

    # --- one batch -----------------------------------------------------------------------

    def _systems(self) -> dict[str, SystemSnapshot]:
        return dict(self._view.systems)

    def _decode(self, records: Sequence[Record]) -> Decoded:
        return decode_records(records, self._bus.topics, self._processor.start_offset)

    def _apply(
        self, batch: dict[int, PartitionBatch], systems: dict[str, SystemSnapshot]
    ) -> tuple[int, int]:
        return apply_batch(self._processor, self._pacer, batch, systems)

    def _holding(self) -> bool:
        """Outcomes are held back (see ``pacing``)."""
        return self._pacer is not None and bool(self._pacer.partitions())

    def _drop_held(self, partitions: set[int] | None = None) -> None:
        if self._pacer is not None:
            self._pacer.drop(partitions)
            self._metrics.outcomes_held.set(self._pacer.held())

    async def _handle(self, polled: _Polled) -> None:
        started = time.perf_counter()
        if polled.decoded is not None:
            batch, bad = polled.decoded
        else:
            batch, bad = await asyncio.to_thread(self._decode, polled.records)
        for record, error in bad:
            await self._dead_letter(record, error)
        systems = self._systems()
        senders = {
            sid
            for part in batch.values()
            if part.predictions is not None
            for sid in set(part.predictions.system_ids)
        }
        hashes = {systems[s].reference_hash for s in senders if s in systems}
        await self._references.ensure(h for h in hashes if h is not None)
        if batch or self._holding():
            n_pred, n_out = await asyncio.to_thread(self._apply, batch, systems)
            if self._pacer is not None:
                self._metrics.outcomes_held.set(self._pacer.held())
            self._metrics.events.labels("prediction").inc(n_pred)
            self._metrics.events.labels("outcome").inc(n_out)
            self._changed = True
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _idle(self, consumer: Consumer, ahead: asyncio.Task[_Polled] | None) -> None:
        idle_s = self._settings.idle_close_s
        now = time.monotonic()
        candidates = any(
            now - state.last_arrival >= idle_s
            for part in self._processor.partitions.values()
            for state in part.systems.values()
        )
        if not candidates:
            return
        # systems with records polled ahead or outcomes held back are not idle
        busy = set() if self._pacer is None else self._pacer.systems()
        if ahead is not None:
            polled = (await ahead).systems()
            if polled is None:
                return
            busy |= polled
        if await consumer.lag() > 0:
            return
        advanced = await asyncio.to_thread(
            self._processor.advance_idle,
            self._systems(),
            idle_s=idle_s,
            wall_clock_s=time.time(),
            busy=busy,
        )
        if advanced:
            self._changed = True

    async def _checkpoint(self, consumer: Consumer | None) -> None:
        started = time.perf_counter()
        results = await asyncio.to_thread(self._processor.checkpoint, self._systems())
        self._metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self._last_checkpoint = time.monotonic()
        self._changed = False
        self.checkpoints += 1
        if results:
            self._relay.notify()
        for result in results:
            self._metrics.record(result)
        self._metrics.count_tallies(self._processor.tallied)
        self._export_counters()
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in self._processor.next_offsets().items()
            if TopicPartition(topic, partition) in assigned
        }
        if offsets:
            try:
                await consumer.commit(offsets)
            except BusUnavailable as exc:  # the checkpoint holds the offsets: nothing is lost
                log.warning("evaluator: offset commit failed (%s)", exc)

    def _export_counters(self) -> None:
        self._metrics.known_systems(self._view.systems)
        processor = self._processor
        self._metrics.checkpointed(processor.partitions, processor.delays, processor.latencies)

    # --- rebalance -----------------------------------------------------------------------

    def _stream_partitions(self, tps: set[TopicPartition]) -> set[int]:
        topics = self._bus.topics
        return {tp.partition for tp in tps if tp.topic in (topics.predictions, topics.outcomes)}

    async def _on_assign(self, tps: set[TopicPartition]) -> None:
        self.partitions_assigned = True
        self._generation += 1
        async with self._lock:
            for partition in sorted(self._stream_partitions(tps)):
                if partition not in self._processor.partitions:
                    state = await asyncio.to_thread(self._processor.load, partition)
                    await self._seed(state.systems)
            self._metrics.partitions.set(len(self._processor.partitions))

    async def _on_revoke(self, tps: set[TopicPartition]) -> None:
        """Hand the partitions over: checkpoint them (and commit) before another owner loads."""
        self.partitions_assigned = False
        self._generation += 1
        async with self._lock:
            revoked = self._stream_partitions(tps)
            if revoked & set(self._processor.partitions):
                try:
                    await self._checkpoint(self._consumer)
                except Exception:
                    log.exception("evaluator: checkpoint on revoke failed; the new owner replays")
                    await asyncio.to_thread(self._processor.abort)
            self._drop_held(revoked)
            for partition in revoked:
                if partition in self._processor.partitions:
                    self._metrics.partition_dropped(self._processor.partitions[partition].systems)
                self._processor.drop(partition)
            self._metrics.partitions.set(len(self._processor.partitions))

    async def _seed(self, systems: Iterable[str]) -> None:
        """A partition taken over: its objectives' state from their newest verdicts."""
        try:
            verdicts = await asyncio.to_thread(self._metrics.latest_verdicts, list(systems))
        except Exception:  # metrics only: the verdicts come again with the next windows
            log.warning("evaluator: cannot read the newest verdicts", exc_info=True)
            return
        self._metrics.seed(verdicts)

    # --- DLQ -----------------------------------------------------------------------------

    async def _dead_letter(self, record: Record, error: str) -> None:
        await dead_letter(self._bus, record, error, consumer="evaluator")
        self._metrics.dead_letter(record)


async def _dropped(ahead: asyncio.Task[_Polled] | None) -> None:
    """Cancel a batch polled ahead (its records come again from the committed offsets)."""
    if ahead is None:
        return
    ahead.cancel()
    await asyncio.wait([ahead])
    if not ahead.cancelled() and ahead.exception() is not None:
        log.debug("evaluator: batch polled ahead failed: %r", ahead.exception())
