"""Reading the two topics in step: outcomes held back until their predictions come.

When the evaluator works through a backlog (a replay, or a restart after downtime), each poll
brings as many bytes of outcomes as of predictions, and outcomes are small: the outcome
partition runs far ahead in event time. Most outcomes then come before their predictions and
wait in the store: written at the checkpoint, read and deleted when the prediction comes,
three statements per outcome that a live stream (outcomes follow their predictions) never pays.

``OutcomePacer`` holds a partition's decoded outcome records back while they are more than
``lead_s`` ahead of the newest prediction time of their system in that partition, and lets
them through in order when the predictions catch up, when a poll brings no predictions for the
partition (they have caught up with the topic: nothing to wait for), or when more than
``max_held`` events are held (memory stays bounded). Whole records only: every event of a
record carries the record's offset, and a checkpoint covers records.

Held records are not applied, so their offsets are not checkpointed: after a crash, a
rebalance or a rewind they are read again (the runner drops what is held whenever it rewinds).
Results do not depend on it: the processor's results do not depend on how the two topics
interleave.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from shared.contracts import SystemSnapshot

from .consumer import StreamProcessor
from .decoding import OutcomeBatch, PartitionBatch

__all__ = ["OutcomePacer", "Piece", "apply_batch"]


@dataclass(slots=True)
class _Held:
    batch: OutcomeBatch | None
    start: int
    """First row not applied yet."""
    seen: int | None
    """Next outcome offset once the whole batch is applied (dead-lettered records included)."""

    @property
    def left(self) -> int:
        return 0 if self.batch is None else self.batch.size - self.start


Piece = tuple[OutcomeBatch | None, int | None]
"""Rows to apply (None: nothing) and the outcome offset to advance to afterwards (None: the
batch goes on)."""


class OutcomePacer:
    def __init__(self, *, lead_s: float, max_held: int) -> None:
        self.lead_s = lead_s
        self.max_held = max_held
        self._queues: dict[int, deque[_Held]] = {}

    def add(self, partition: int, batch: OutcomeBatch | None, seen: int | None) -> None:
        """A poll's outcomes of ``partition``, after those already held."""
        self._queues.setdefault(partition, deque()).append(_Held(batch, 0, seen))

    def partitions(self) -> list[int]:
        return sorted(p for p, queue in self._queues.items() if queue)

    def held(self, partition: int | None = None) -> int:
        """Events held (in ``partition``, or in all)."""
        queues = self._queues.values() if partition is None else [self._queues.get(partition, ())]
        return sum(h.left for queue in queues for h in queue)

    def systems(self) -> set[str]:
        """Systems with outcomes held."""
        found: set[str] = set()
        for queue in self._queues.values():
            for h in queue:
                if h.batch is not None and h.left:
                    found.update(h.batch.system_ids[h.start :])
        return found

    def drop(self, partitions: Iterable[int] | None = None) -> None:
        """Forget what is held (its records are read again)."""
        for partition in list(self._queues) if partitions is None else partitions:
            self._queues.pop(partition, None)

    def due(
        self, partition: int, predictions: Mapping[str, float | None], *, release: bool
    ) -> list[Piece]:
        """What to apply now, in order: everything when ``release``, else the records whose
        outcomes are at most ``lead_s`` ahead of ``predictions`` (each system's newest
        prediction time), and the oldest beyond ``max_held``."""
        queue = self._queues.get(partition)
        pieces: list[Piece] = []
        if not queue:
            return pieces
        excess = sum(h.left for h in queue) - self.max_held
        while queue:
            held = queue[0]
            batch, left = held.batch, held.left
            if batch is None or left == 0:
                queue.popleft()
                pieces.append((None, held.seen))
                continue
            take = left if release else self._ready(batch, held.start, predictions)
            if excess > 0 and take < excess:
                take = _record_end(batch, held.start, min(excess, left))
            if take:
                piece = batch.rows(held.start, held.start + take)
                held.start += take
                excess -= take
                done = held.left == 0
                pieces.append((piece, held.seen if done else None))
                if done:
                    queue.popleft()
                    continue
            break
        return pieces

    def _ready(
        self, batch: OutcomeBatch, start: int, predictions: Mapping[str, float | None]
    ) -> int:
        """Rows from ``start`` on, up to the first record with an outcome too far ahead."""
        ts = batch.ts[start:]
        ids = batch.system_ids
        first = ids[start]
        if ids.count(first) == len(ids):  # one system, the common case
            limit = _limit(predictions.get(first), self.lead_s)
            ahead = np.flatnonzero(ts > limit)
        else:
            limits = {sid: _limit(predictions.get(sid), self.lead_s) for sid in set(ids[start:])}
            bound = np.fromiter((limits[sid] for sid in ids[start:]), np.float64, count=ts.size)
            ahead = np.flatnonzero(ts > bound)
        if ahead.size == 0:
            return int(ts.size)
        offsets = batch.offsets[start:]
        return int(np.searchsorted(offsets, offsets[int(ahead[0])], side="left"))


def _limit(prediction_time: float | None, lead_s: float) -> float:
    return -np.inf if prediction_time is None else prediction_time + lead_s


def _record_end(batch: OutcomeBatch, start: int, rows: int) -> int:
    """Rows from ``start`` to the end of the record holding row ``start + rows - 1``."""
    offsets = batch.offsets[start:]
    return int(np.searchsorted(offsets, offsets[rows - 1], side="right"))


def apply_batch(
    processor: StreamProcessor,
    pacer: OutcomePacer | None,
    batch: Mapping[int, PartitionBatch],
    systems: Mapping[str, SystemSnapshot],
) -> tuple[int, int]:
    """Apply a polled batch, its outcomes through ``pacer`` (None: as they come); returns the
    (predictions, outcomes) applied. An empty batch lets everything held through."""
    outcomes_topic = processor.topics.outcomes
    applied = [0, 0]
    for partition, part in sorted(batch.items()):
        if part.predictions is not None:
            applied[0] += part.predictions.size
        if pacer is None:
            processor.apply(partition, part.predictions, part.outcomes, systems)
            processor.advance(partition, part.seen)
            applied[1] += 0 if part.outcomes is None else part.outcomes.size
            continue
        processor.apply(partition, part.predictions, None, systems)
        processor.advance(partition, {t: o for t, o in part.seen.items() if t != outcomes_topic})
        if outcomes_topic in part.seen:
            pacer.add(partition, part.outcomes, part.seen[outcomes_topic])
    if pacer is None:
        return applied[0], applied[1]
    came = {
        p for p, part in batch.items() if part.predictions is not None and part.predictions.size
    }
    for partition in pacer.partitions():
        times = processor.prediction_times(partition)
        for piece, upto in pacer.due(partition, times, release=partition not in came):
            if piece is not None:
                processor.apply(partition, None, piece, systems)
                applied[1] += piece.size
            if upto is not None:
                processor.advance(partition, {outcomes_topic: upto})
    return applied[0], applied[1]
