"""The handling of decoded predictions and outcomes: join, windows, judgement.

:class:`StreamProcessor` owns the state of the stream partitions assigned to this instance
(partition ``p`` of the predictions topic and of the outcomes topic: both are keyed by
system_id, so one system's events meet in one partition number). ``apply`` takes one
partition's records of a batch and

1. files each prediction in the durable join state (a prediction already there is a duplicate
   and counted, not accumulated) and adds it to the open window of every objective window size
   unless that window already closed (then it is counted as late);
2. joins each outcome to its prediction (or files it until the prediction arrives), giving it a
   label time (see ``windows``); outcomes for expired, duplicate or never-seen predictions are
   counted;
3. closes the windows the prediction watermark passed, judging label-free objectives from the
   accumulators, and evaluates label objectives of closed windows at each label cut-off the
   label clock passed, from the joined rows (revision 0, then a revision per cut-off at which
   new labels arrived).

Every decision depends only on the order of records within each topic partition, never on how
they were batched or interleaved across the two topics, so a replay after a crash reproduces the
same evaluations. Results are written with their outbox records into the store's open
transaction; ``checkpoint`` adds the partition state and the consumed offsets and commits.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.bus import Topics
from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    Evidence,
    Objective,
    ObjectiveStatus,
    OffsetRange,
    SystemSnapshot,
)

from .columns import ColumnBatch
from .decoding import OutcomeBatch, PredictionBatch
from .judge import Judgement, Measurement, judge, measure_window, result_parameters
from .labels import LabelBatch, LabelWindow, label_needs, measure_labels
from .plan import WindowPlan, is_label_metric
from .references import ReferenceCache
from .store import EvaluatorStore, JoinInfo, Waiting
from .window import WindowState
from .windows import (
    FloatArray,
    label_clock,
    label_times,
    running_watermark,
    to_datetime,
    window_starts,
)

__all__ = ["MaybeWaiting", "PartitionState", "ProcessorConfig", "StreamProcessor", "SystemState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    lateness_s: float = 5.0
    label_wait_s: float = 300.0
    revision_interval_s: float = 0.0
    max_empty_windows: int = 1_000
    label_windows_in_memory: int = 256
    """Per system; beyond it, label windows not expecting a revision stay only in the store."""
    waiting_filter_bits: int = 16
    """Bits per waiting outcome of the in-memory filter that spares a prediction nobody waits
    for a lookup (0: no filter, every prediction is looked up)."""
    max_future_skew_s: float = 3600.0
    """Events timed more than this ahead of the wall clock are refused (counted, not applied)."""
    live_window_s: float = 3600.0
    """Idle closing advances a system only if its newest event time is this close to the wall
    clock (a live stream); a historical one (a backfill) closes its windows by event time."""
    late_windows_kept: int = 1_000
    """Per system: windows whose late-prediction counts are kept (the newest ones)."""


@dataclass
class SizeState:
    """One window size of one system."""

    closed_until: int | None = None
    open: dict[int, WindowState] = field(default_factory=dict)
    awaiting: list[int] = field(default_factory=list)
    """Closed windows whose label objectives have not been evaluated yet (sorted)."""
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Windows with labels not yet in an emitted revision: {"k_last": int | None, "due": [k]}."""
    dirty: set[int] = field(default_factory=set)
    closed: set[int] = field(default_factory=set)

    def to_state(self) -> dict[str, Any]:
        return {
            "closed_until": self.closed_until,
            "awaiting": self.awaiting,
            "pending": {str(k): v for k, v in self.pending.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SizeState:
        return cls(
            closed_until=state.get("closed_until"),
            awaiting=[int(s) for s in state.get("awaiting", [])],
            pending={int(k): dict(v) for k, v in state.get("pending", {}).items()},
        )


class MaybeWaiting:
    """Prediction ids that may have an outcome waiting: a bitmap over their hashes (one bit
    per hash, ``bits_per_id`` bits per id it was sized for). An id added is always found; an
    id never added is found with a probability of about the share of set bits (it then costs
    one lookup). Ids are not removed: the owner rebuilds it once more were added than it was
    sized for (``full``)."""

    def __init__(self, ids: Sequence[str], *, bits_per_id: int) -> None:
        size = 1 << max(16, (2 * max(len(ids), 1) * bits_per_id - 1).bit_length())
        self._bits = np.zeros(size, dtype=np.bool_)
        self._mask = size - 1
        self._room = size // bits_per_id
        self._added = 0
        self.add(ids)

    def _slots(self, ids: Collection[str]) -> npt.NDArray[np.int64]:
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        return hashes & self._mask

    def add(self, ids: Collection[str]) -> None:
        if ids:
            self._bits[self._slots(ids)] = True
            self._added += len(ids)

    def maybe(self, ids: Collection[str]) -> list[bool]:
        if not ids:
            return []
        found: list[bool] = self._bits[self._slots(ids)].tolist()
        return found

    @property
    def full(self) -> bool:
        return self._added > self._room


@dataclass
class SystemState:
    predictions: float | None = None
    """P: the newest prediction time seen (epoch s)."""
    outcomes: float | None = None
    """O: the newest outcome time seen."""
    counters: dict[str, int] = field(default_factory=dict)
    sizes: dict[int, SizeState] = field(default_factory=dict)
    last_arrival: float = 0.0
    waiting: int = 0
    """Outcomes filed in the store waiting for their prediction (0: no need to look)."""
    waiting_ids: MaybeWaiting | None = None
    """Which prediction ids those outcomes may wait for (None: not known, ask the store);
    built from the store when needed, never checkpointed."""
    filed: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Waiting outcomes filed since the last checkpoint, by prediction id: written to the
    store by the checkpoint (the open transaction makes nothing durable before it anyway),
    so those whose prediction comes before it never touch the store."""
    labels: dict[tuple[int, int], LabelWindow] = field(default_factory=dict)
    """Label windows in memory by (size, start); the rest are in the store."""
    labels_dirty: set[tuple[int, int]] = field(default_factory=set)
    labels_gone: set[tuple[int, int]] = field(default_factory=set)
    gone: set[tuple[int, int]] = field(default_factory=set)
    """Open windows of a window size no objective uses any more (to delete)."""
    late: dict[tuple[int, int], int] = field(default_factory=dict)
    """Late predictions per window (size, start): the newest ``late_windows_kept`` windows."""

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.counters[name] = self.counters.get(name, 0) + n

    def count_late(self, size: int, starts: npt.NDArray[np.int64], keep: int) -> None:
        windows, counts = np.unique(starts, return_counts=True)
        for start, n in zip(windows.tolist(), counts.tolist(), strict=True):
            self.late[(size, start)] = self.late.get((size, start), 0) + n
        if len(self.late) > keep:
            newest = sorted(self.late, key=lambda key: (key[1], key[0]))[-keep:]
            self.late = {key: self.late[key] for key in sorted(newest)}

    def to_state(self) -> dict[str, Any]:
        return {
            "P": self.predictions,
            "O": self.outcomes,
            "waiting": self.waiting,
            "counters": self.counters,
            "sizes": {str(size): s.to_state() for size, s in self.sizes.items()},
            "late": [[size, start, n] for (size, start), n in sorted(self.late.items())],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SystemState:
        return cls(
            predictions=state.get("P"),
            outcomes=state.get("O"),
            waiting=int(state.get("waiting", 0)),
            counters={str(k): int(v) for k, v in state.get("counters", {}).items()},
            sizes={int(k): SizeState.from_state(v) for k, v in state.get("sizes", {}).items()},
            late={(int(size), int(start)): int(n) for size, start, n in state.get("late", [])},
        )


@dataclass
class PartitionState:
    partition: int
    epoch: int
    offsets: dict[str, int]
    systems: dict[str, SystemState] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    records: int = 0
    """Records applied since the last checkpoint."""

    def to_state(self) -> dict[str, Any]:
        return {
            "systems": {sid: s.to_state() for sid, s in self.systems.items()},
            "counters": self.counters,
        }


@dataclass(slots=True)
class _Emitted:
    result: EvaluationResult
    size: int
    cutoff: int | None


def _ranges(topic: str, spans: Mapping[int, Sequence[int]]) -> list[OffsetRange]:
    return [
        OffsetRange(topic=topic, partition=p, first=int(a), last=int(b))
        for p, (a, b) in sorted(spans.items())
    ]


class StreamProcessor:
    def __init__(
        self,
        *,
        store: EvaluatorStore,
        topics: Topics,
        references: ReferenceCache,
        config: ProcessorConfig,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.topics = topics
        self.references = references
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.partitions: dict[int, PartitionState] = {}
        self.fenced: set[int] = set()
        self._emitted: list[_Emitted] = []
        self._tallies: dict[tuple[str, str], int] = {}
        """Late and refused events per (system, counter) since the last checkpoint."""
        self.tallied: dict[tuple[str, str], int] = {}
        """The tallies the last checkpoint made durable (for counters that only go up)."""
        self._delays: dict[str, list[FloatArray]] = {}
        self.delays: dict[str, list[FloatArray]] = {}
        """Label delays (outcome minus prediction time) of the joins the last checkpoint made
        durable, per system (for the label delay histogram)."""
        self._latencies: dict[str, list[FloatArray]] = {}
        self.latencies: dict[str, list[FloatArray]] = {}
        """The predictions' ``latency_ms`` (NaN where not given) the last checkpoint made
        durable, per system (for the model latency histogram)."""
        self._plans: dict[tuple[str, int, str, str | None], WindowPlan] = {}

    # --- ownership -----------------------------------------------------------------------

    def load(self, partition: int) -> PartitionState:
        """Take the partition over from the store (its checkpoint); fences earlier owners."""
        claim = self.store.claim(partition)
        state = PartitionState(partition, claim.epoch, dict(claim.offsets))
        for sid, raw in claim.state.get("systems", {}).items():
            state.systems[sid] = SystemState.from_state(raw)
        state.counters = {str(k): int(v) for k, v in claim.state.get("counters", {}).items()}
        for sid, size, start, text in claim.windows:
            system = state.systems.setdefault(sid, SystemState())
            system.sizes.setdefault(size, SizeState()).open[start] = WindowState.from_json(text)
        now = self.clock()
        for system in state.systems.values():
            system.last_arrival = now
        self.partitions[partition] = state
        self.fenced.discard(partition)
        return state

    def partition(self, partition: int) -> PartitionState:
        found = self.partitions.get(partition)
        return found if found is not None else self.load(partition)

    def drop(self, partition: int) -> None:
        self.partitions.pop(partition, None)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        return {
            (topic, p.partition): offset
            for p in self.partitions.values()
            for topic, offset in p.offsets.items()
        }

    # --- a batch -------------------------------------------------------------------------

    def apply(
        self,
        partition: int,
        predictions: PredictionBatch | None,
        outcomes: OutcomeBatch | None,
        systems: Mapping[str, SystemSnapshot],
    ) -> None:
        """Apply one partition's new records (already filtered by ``is_new``)."""
        part = self.partition(partition)
        now = self.clock()
        horizon = self.wall_clock() + self.config.max_future_skew_s
        touched: dict[str, SystemState] = {}
        for batch in (predictions, outcomes):
            if batch is None or not batch.size:
                continue
            future = batch.ts > horizon
            kind = "predictions" if isinstance(batch, PredictionBatch) else "outcomes"
            for sid, rows in _by_system(batch.system_ids).items():
                snapshot = systems.get(sid)
                if snapshot is None or snapshot.status != "active":
                    unknown = part.counters.get("unknown_system_events", 0)
                    part.counters["unknown_system_events"] = unknown + _count(rows, batch.size)
                    continue
                state = part.systems.setdefault(sid, SystemState())
                state.last_arrival = now
                if future.any():
                    rows = self._refuse_future(sid, state, kind, future, rows)
                    if not rows.size:
                        continue
                if isinstance(batch, PredictionBatch):
                    self._predictions(part, snapshot, state, ColumnBatch(batch, rows))
                else:
                    self._outcomes(part, snapshot, state, batch, rows)
                touched[sid] = state
        for sid, state in touched.items():
            self._evaluate(part, systems[sid], state)
        for topic, consumed in (
            (self.topics.predictions, predictions),
            (self.topics.outcomes, outcomes),
        ):
            if consumed is not None and consumed.size:
                last = int(consumed.offsets.max())
                part.offsets[topic] = max(part.offsets.get(topic, 0), last + 1)
                part.records += consumed.size

    def _refuse_future(
        self,
        sid: str,
        state: SystemState,
        kind: str,
        future: npt.NDArray[np.bool_],
        rows: npt.NDArray[np.intp] | None,
    ) -> npt.NDArray[np.intp]:
        """The rows of ``rows`` (None: all) not timed beyond the future skew; the others are
        counted (``future_<kind>``), never applied: one wrong clock must not move the
        system's watermark past the present."""
        every = np.arange(future.size, dtype=np.intp) if rows is None else rows
        refused = future[every]
        n = int(refused.sum())
        if n:
            state.count(f"future_{kind}", n)
            self._tally(sid, f"future_{kind}", n)
            log.warning(
                "evaluator: %d %s of system %s timed more than %.0f s ahead of the wall "
                "clock refused (counter future_%s)",
                n,
                kind,
                sid,
                self.config.max_future_skew_s,
                kind,
            )
        kept: npt.NDArray[np.intp] = every[~refused]
        return kept

    def _tally(self, sid: str, name: str, n: int) -> None:
        self._tallies[(sid, name)] = self._tallies.get((sid, name), 0) + n

    def advance(self, partition: int, next_offsets: Mapping[str, int]) -> None:
        """Record offsets consumed without effect (dead-lettered records) as done too."""
        part = self.partition(partition)
        for topic, offset in next_offsets.items():
            part.offsets[topic] = max(part.offsets.get(topic, 0), offset)

    def prediction_times(self, partition: int) -> dict[str, float | None]:
        """Each system's newest prediction time in the partition."""
        part = self.partitions.get(partition)
        return {} if part is None else {sid: s.predictions for sid, s in part.systems.items()}

    def start_offset(self, topic: str, partition: int) -> int | None:
        """First offset not applied yet (records below it are redeliveries); None if fenced."""
        if partition in self.fenced:
            return None
        return self.partition(partition).offsets.get(topic, 0)

    def advance_idle(
        self,
        systems: Mapping[str, SystemSnapshot],
        *,
        idle_s: float,
        wall_clock_s: float,
        busy: Collection[str] = (),
    ) -> int:
        """Move the watermarks of live systems silent for ``idle_s`` to wall-clock time (not
        those in ``busy``: they have records polled but not applied yet). A system is live when
        its newest event time is within ``live_window_s`` of the wall clock; a historical
        stream (a backfill) that pauses keeps its watermarks, so a pause changes no result."""
        advanced = 0
        now = self.clock()
        live_from = wall_clock_s - self.config.live_window_s
        for part in self.partitions.values():
            for sid, state in part.systems.items():
                snapshot = systems.get(sid)
                if snapshot is None or now - state.last_arrival < idle_s or sid in busy:
                    continue
                if state.predictions is not None and state.predictions >= wall_clock_s:
                    continue
                newest = max(
                    (t for t in (state.predictions, state.outcomes) if t is not None),
                    default=None,
                )
                if newest is None or newest < live_from:
                    continue
                state.predictions = wall_clock_s
                state.outcomes = max(state.outcomes or wall_clock_s, wall_clock_s)
                self._evaluate(part, snapshot, state, idle_now=wall_clock_s)
                advanced += 1
        return advanced

    # --- predictions ---------------------------------------------------------------------

    def _plan(self, system: SystemSnapshot, size: int, reference_hash: str | None) -> WindowPlan:
        key = (system.system_id, size, system.updated_at.isoformat(), reference_hash)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 1_000:
                self._plans.clear()
            objectives = _active(system)
            plan = WindowPlan.build(system, size, objectives, self.references.get(reference_hash))
            self._plans[key] = plan
        return plan

    def _predictions(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        batch: ColumnBatch,
    ) -> None:
        n = batch.size
        offsets = batch.offsets
        seen, state.predictions = running_watermark(state.predictions, batch.ts)
        state.count("predictions", n)
        self._latencies.setdefault(system.system_id, []).append(batch.latency())
        ids = batch.take(batch.batch.event_ids)
        first = _first_index(ids)
        duplicate = np.zeros(n, dtype=np.bool_)
        keep = list(first.values())
        if len(first) < n:
            duplicate[:] = True
            duplicate[keep] = False
        sid = system.system_id
        source = batch.batch
        predicted = batch.take(source.prediction_texts())
        scores = batch.take(source.score_texts())
        attributes = batch.take(source.attribute_texts())
        arrival: list[float | None] = seen.tolist()
        if np.isinf(seen).any():
            arrival = [None if math.isinf(x) else x for x in arrival]  # type: ignore[arg-type]
        ts = batch.ts.tolist()
        offset_list = offsets.tolist()
        horizon = system.label_horizon_seconds
        waits = self._waiting(sid, state, first) if state.waiting else {}
        if len(waits) > 1:  # in batch order, however they were found
            waits = dict(sorted(waits.items(), key=lambda item: first[item[0]]))
        labelled = [False] * n
        for event_id, wait in waits.items():
            i = first[event_id]
            labelled[i] = wait.label_time <= ts[i] + horizon
        columns: list[list[Any]] = [ids, ts, arrival, predicted, scores, attributes]
        tail: list[list[Any]] = [offset_list, labelled]
        if len(keep) < n:  # duplicates within the batch: their first occurrences
            columns = [[column[i] for i in keep] for column in columns]
            tail = [[column[i] for i in keep] for column in tail]
        m = len(keep)
        rows = list(zip(repeat(sid, m), *columns, repeat(part.partition, m), *tail, strict=True))
        if self.store.insert_predictions(rows) < len(rows):
            # rows this batch did not write: predictions an earlier batch had (duplicates)
            first_offset = int(offsets.min())
            found = self.store.lookup(sid, list(first), not_from=(part.partition, first_offset))
            for event_id in found:
                duplicate[first[event_id]] = True
        joined: list[tuple[int, Waiting]] = []
        for event_id, wait in waits.items():
            i = first[event_id]
            if duplicate[i]:
                continue  # the outcome stays filed for the prediction the store has
            if wait.label_time > ts[i] + horizon:
                state.count("expired_outcomes")
            else:
                joined.append((i, wait))
                state.count("labelled")
        taken = [event_id for event_id in waits if not duplicate[first[event_id]]]
        self.store.take_waiting(sid, [i for i in taken if state.filed.pop(i, None) is None])
        state.waiting -= len(taken)
        if not state.waiting:
            state.waiting_ids = None  # nothing waits: rebuilt empty when something does
        state.count("duplicate_predictions", int(duplicate.sum()))
        valid = ~duplicate
        lateness = self.config.lateness_s
        late_any: npt.NDArray[np.bool_] | None = None
        for size in _sizes(system):
            sizes = state.sizes.setdefault(size, SizeState())
            starts = window_starts(batch.ts, size)
            accepted = valid & (seen < starts + size + lateness)
            late = valid & ~accepted
            n_late = int(late.sum())
            if n_late:
                state.count(f"late_{size}s", n_late)
                state.count_late(size, starts[late], self.config.late_windows_kept)
                late_any = late if late_any is None else late_any | late
            if not accepted.any():
                continue
            if sizes.closed_until is None:
                sizes.closed_until = int(starts[accepted].min())
            for start in np.unique(starts[accepted]).tolist():
                window = sizes.open.get(start)
                if window is None:
                    window = sizes.open[start] = WindowState(
                        start=start, size=size, reference_hash=system.reference_hash
                    )
                chosen = np.flatnonzero(accepted & (starts == start))
                plan = self._plan(system, size, window.reference_hash)
                window.update(plan, batch, chosen, part.partition, offsets)
                sizes.dirty.add(start)
        if late_any is not None:
            n_late = int(late_any.sum())
            state.count("late_predictions", n_late)
            self._tally(sid, "late_predictions", n_late)
        if joined:
            at = [i for i, _ in joined]
            waited = [wait for _, wait in joined]
            pred_ts = batch.ts[at]
            labels = LabelBatch(
                predicted=[predicted[i] for i in at],
                actual=[wait.actual for wait in waited],
                scores=[scores[i] for i in at],
                attributes=[attributes[i] for i in at],
                delay_s=np.asarray([wait.ts for wait in waited], dtype=np.float64) - pred_ts,
                partitions=np.asarray([wait.out_partition for wait in waited], dtype=np.int64),
                offsets=np.asarray([wait.out_offset for wait in waited], dtype=np.int64),
            )
            times = np.asarray([wait.label_time for wait in waited], dtype=np.float64)
            self._add_labels(part, system, state, pred_ts, seen[at], times, labels)

    def _waiting(
        self, sid: str, state: SystemState, first: Mapping[str, int]
    ) -> dict[str, Waiting]:
        """The outcomes waiting for these predictions: looked up only for ids that may have
        one (``waiting_ids``)."""
        bits = self.config.waiting_filter_bits
        if state.waiting_ids is None and bits:
            ids = self.store.waiting_ids(sid) + list(state.filed)
            state.waiting_ids = MaybeWaiting(ids, bits_per_id=bits)
        filed = state.filed
        found = {i: Waiting._make(filed[i][1:]) for i in first if i in filed} if filed else {}
        keys = list(first)
        flags = [True] * len(keys) if state.waiting_ids is None else state.waiting_ids.maybe(keys)
        maybe = [i for i, flag in zip(keys, flags, strict=True) if flag and i not in found]
        if maybe:
            found.update(self.store.waiting(sid, maybe))
        return found

    def _file(self, sid: str, state: SystemState, rows: list[tuple[Any, ...]]) -> int:
        """File outcomes waiting for their prediction (``filed`` until the next checkpoint);
        returns how many were new (not a second outcome for a prediction already waited for)."""
        fresh = [row for row in rows if row[1] not in state.filed]
        keys = [row[1] for row in fresh]
        if state.waiting_ids is not None:
            keys = [i for i, flag in zip(keys, state.waiting_ids.maybe(keys), strict=True) if flag]
        stored = self.store.waiting(sid, keys) if keys and state.waiting else {}
        new = [row for row in fresh if row[1] not in stored]
        state.filed.update((row[1], row) for row in new)
        if state.waiting_ids is not None:
            state.waiting_ids.add([row[1] for row in new])
            if state.waiting_ids.full:
                state.waiting_ids = None  # rebuilt, larger, when next needed
        return len(new)

    # --- outcomes ------------------------------------------------------------------------

    def _outcomes(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        batch: OutcomeBatch,
        rows: npt.NDArray[np.intp] | None,
    ) -> None:
        n = batch.size if rows is None else int(rows.size)
        ts = batch.ts if rows is None else batch.ts[rows]
        offsets = (batch.offsets if rows is None else batch.offsets[rows]).tolist()
        times = label_times(state.outcomes, ts, self.config.lateness_s).tolist()
        _, state.outcomes = running_watermark(state.outcomes, ts)
        state.count("outcomes", n)
        sid = system.system_id
        ids = _take(batch.prediction_ids, rows)
        first = _first_index(ids)
        state.count("duplicate_outcomes", n - len(first))
        horizon = system.label_horizon_seconds
        found = self.store.join_outcomes(
            sid, list(first), [times[i] for i in first.values()], horizon
        )
        actuals = _take(batch.actual_texts(), rows)
        stamps = ts.tolist()
        partition = part.partition
        waiting = []
        joined: list[tuple[int, JoinInfo]] = []
        for prediction_id, i in first.items():
            info = found.get(prediction_id)
            label_time = times[i]
            if info is None:
                waiting.append(
                    (sid, prediction_id, stamps[i], actuals[i], label_time, partition, offsets[i])
                )
            elif info.labelled:
                state.count("duplicate_outcomes")
            elif label_time > info.ts + horizon:
                state.count("expired_outcomes")
            else:  # join_outcomes marked it labelled
                state.count("labelled")
                joined.append((i, info))
        filed = self._file(sid, state, waiting)
        state.count("duplicate_outcomes", len(waiting) - filed)  # a second one while waiting
        state.count("waiting_outcomes", filed)
        state.waiting += filed
        if joined:
            at = [i for i, _ in joined]
            infos = [info for _, info in joined]
            pred_ts = np.asarray([info.ts for info in infos], dtype=np.float64)
            batch_labels = LabelBatch(
                predicted=[info.prediction for info in infos],
                actual=[actuals[i] for i in at],
                scores=[info.scores for info in infos],
                attributes=[info.attributes for info in infos],
                delay_s=ts[at] - pred_ts,
                partitions=np.full(len(at), partition, dtype=np.int64),
                offsets=np.asarray([offsets[i] for i in at], dtype=np.int64),
            )
            arrival = np.asarray(
                [-math.inf if info.arrival_wm is None else info.arrival_wm for info in infos],
                dtype=np.float64,
            )
            self._add_labels(
                part,
                system,
                state,
                pred_ts,
                arrival,
                np.asarray([times[i] for i in at]),
                batch_labels,
            )

    def _label_window(
        self,
        part: PartitionState,
        sid: str,
        state: SystemState,
        size: int,
        start: int,
        *,
        create: bool,
    ) -> LabelWindow | None:
        key = (size, start)
        window = state.labels.get(key)
        if window is None:
            text = self.store.load_labels(part.partition, sid, size, start)
            if text is not None:
                window = LabelWindow.from_json(text)
            elif create:
                window = LabelWindow(start=start, size=size)
            else:
                return None
            state.labels[key] = window
        return window

    def _add_labels(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        ts: FloatArray,
        arrival: FloatArray,
        label_time: FloatArray,
        labels: LabelBatch,
    ) -> None:
        """Labels joined to predictions (time ``ts``, accepted when the prediction watermark
        was ``arrival``, -inf if none): each goes into the bucket of the revision it is due in."""
        self._delays.setdefault(system.system_id, []).append(labels.delay_s)
        lateness = self.config.lateness_s
        objectives = _active(system)
        for size in _label_sizes(system):
            needs = label_needs(
                o for o in objectives if o.window_seconds == size and is_label_metric(o.metric)
            )
            labels.prepare(needs)
            sizes = state.sizes.setdefault(size, SizeState())
            starts = window_starts(ts, size)
            ends = starts + size
            taken = arrival < ends + lateness  # else the prediction was late for the window
            interval = self._interval(size)
            after = np.floor((label_time - ends) / interval) + 1
            ks = np.where(label_time < ends, 0, after).astype(np.int64)
            for start in np.unique(starts[taken]).tolist():
                rows = np.flatnonzero(taken & (starts == start))
                is_open = start in sizes.open or start in sizes.awaiting
                window = self._label_window(
                    part, system.system_id, state, size, start, create=is_open
                )
                if window is None or (not is_open and window.emitted is None):
                    continue  # never evaluated for labels (no label objective then)
                k_rows = ks[rows]
                entry = sizes.pending.get(start)
                if not is_open:
                    if entry is None:
                        entry = sizes.pending[start] = {"k_last": window.emitted, "due": []}
                    k_rows = np.maximum(k_rows, int(entry["k_last"]) + 1)
                for k in np.unique(k_rows).tolist():
                    window.add(k, needs, labels.take(rows[k_rows == k]))
                    if k == 0 and is_open:
                        continue
                    if entry is None:
                        entry = sizes.pending[start] = {"k_last": None, "due": []}
                    due: list[int] = entry["due"]
                    at = bisect.bisect_left(due, k)
                    if at == len(due) or due[at] != k:
                        due.insert(at, k)
                state.labels_dirty.add((size, start))

    def _label_clock(self, state: SystemState) -> float | None:
        return label_clock(
            state.predictions,
            state.outcomes,
            lateness=self.config.lateness_s,
            label_wait=self.config.label_wait_s,
        )

    def _interval(self, size: int) -> float:
        return max(float(size), self.config.revision_interval_s)

    # --- closing windows and label revisions --------------------------------------------

    def _evaluate(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        idle_now: float | None = None,
    ) -> None:
        sizes = _sizes(system)
        for size in list(state.sizes):
            if size not in sizes:
                dropped = state.sizes.pop(size)
                state.gone.update((size, start) for start in dropped.open)
                for key in [k for k in state.labels if k[0] == size]:
                    del state.labels[key]
                    state.labels_dirty.discard(key)
                    state.labels_gone.add(key)
        for size in sizes:
            if size in state.sizes:
                self._close(part, system, state, size, state.sizes[size])
        clock = self._label_clock(state)
        if clock is None:
            return
        for size in _label_sizes(system):
            if size in state.sizes:
                self._labels(part, system, state, size, clock, idle_now)

    def _close(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        size: int,
        sizes: SizeState,
    ) -> None:
        if state.predictions is None or sizes.closed_until is None:
            return
        limit = state.predictions - self.config.lateness_s
        last_end = int(math.floor(limit / size) * size)
        ready = sorted(s for s in sizes.open if s + size <= limit)
        empty: list[int] = []
        if last_end > sizes.closed_until:
            # bounded whatever the gap: never list more than max_empty_windows of it
            first = sizes.closed_until
            gap = (last_end - first) // size - sum(
                1 for s in sizes.open if first <= s < last_end and (s - first) % size == 0
            )
            candidates = (s for s in range(first, last_end, size) if s not in sizes.open)
            empty = list(islice(candidates, self.config.max_empty_windows))
            state.count("empty_windows_skipped", gap - len(empty))
        sizes.closed_until = max(sizes.closed_until, last_end)
        objectives = [o for o in _active(system) if o.window_seconds == size]
        label_free = [o for o in objectives if not is_label_metric(o.metric)]
        has_labels = any(is_label_metric(o.metric) for o in objectives)
        for start in sorted(ready + empty):
            window = sizes.open.pop(start, None)
            if window is None:
                for objective in label_free:
                    if objective.metric == "volume":
                        self._emit_empty(system, objective, start, size)
                continue
            sizes.closed.add(start)
            sizes.dirty.discard(start)
            plan = self._plan(system, size, window.reference_hash)
            reference = self.references.get(window.reference_hash)
            for objective in label_free:
                verdict = judge(
                    objective,
                    lambda o=objective, p=plan, w=window, r=reference: measure_window(o, p, w, r),
                )
                if window.partial and verdict.status is not EvaluationStatus.ERROR:
                    note = "objective started during the window; computed on part of it"
                    verdict = Judgement(
                        verdict.value,
                        verdict.status,
                        verdict.n_samples,
                        verdict.label_coverage,
                        verdict.estimated,
                        note if verdict.detail is None else f"{verdict.detail}; {note}",
                        verdict.approximate,
                        verdict.band,
                    )
                offsets = [
                    OffsetRange(topic=self.topics.predictions, partition=p, first=a, last=b)
                    for p, (a, b) in sorted(window.offsets.items())
                ]
                self._emit(
                    system,
                    objective,
                    start,
                    size,
                    verdict,
                    0,
                    offsets,
                    window.model_version(),
                    window.reference_hash,
                    None,
                )
            if has_labels:
                bisect.insort(sizes.awaiting, start)
                labels = self._label_window(part, system.system_id, state, size, start, create=True)
                assert labels is not None
                labels.closed = True
                labels.total = window.n
                labels.model_version = window.model_version()
                labels.offsets = {p: list(span) for p, span in window.offsets.items()}
                state.labels_dirty.add((size, start))

    def _emit_empty(
        self, system: SystemSnapshot, objective: Objective, start: int, size: int
    ) -> None:
        verdict = judge(objective, lambda: Measurement(0.0, 0))
        self._emit(system, objective, start, size, verdict, 0, [], "", system.reference_hash, None)

    def _labels(
        self,
        part: PartitionState,
        system: SystemSnapshot,
        state: SystemState,
        size: int,
        clock: float,
        idle_now: float | None,
    ) -> None:
        """Revision 0 of windows whose end the label clock passed (labels timed before the
        end; when the idle timer closed it, every label that arrived), then revisions of
        windows at each passed cut-off where new labels are due."""
        sizes = state.sizes[size]
        objectives = [
            o for o in _active(system) if o.window_seconds == size and is_label_metric(o.metric)
        ]
        interval = self._interval(size)
        sid = system.system_id
        while sizes.awaiting and sizes.awaiting[0] + size <= clock:
            start = sizes.awaiting.pop(0)
            end = start + size
            window = self._label_window(part, sid, state, size, start, create=True)
            assert window is not None
            entry = sizes.pending.pop(start, None)
            if idle_now is not None and idle_now > end:
                k = max([math.floor((idle_now - end) / interval), *window.buckets])
                window.merge_through(None)
            else:
                k = 0
                window.merge_through(0)
                due = sorted(window.buckets)
                if entry is not None and due:
                    sizes.pending[start] = {"k_last": 0, "due": due}
            window.emitted = k
            state.labels_dirty.add((size, start))
            self._label_revision(system, objectives, window, k)
        for start in sorted(sizes.pending):
            if start in sizes.open or start in sizes.awaiting:
                continue
            entry = sizes.pending[start]
            end = start + size
            if clock < end:
                continue
            k_now = math.floor((clock - end) / interval)
            due = [k for k in entry["due"] if k <= k_now]
            if not due:
                continue
            window = self._label_window(part, sid, state, size, start, create=False)
            if window is None:  # gone (its system's horizon passed)
                del sizes.pending[start]
                continue
            for k in due:
                window.merge_through(k)
                window.emitted = k
                self._label_revision(system, objectives, window, k)
            state.labels_dirty.add((size, start))
            entry["due"] = [k for k in entry["due"] if k > k_now]
            entry["k_last"] = due[-1]
            if not entry["due"]:
                del sizes.pending[start]

    def _label_revision(
        self,
        system: SystemSnapshot,
        objectives: Sequence[Objective],
        window: LabelWindow,
        k: int,
    ) -> None:
        """Every label objective of the window from the labels of revisions up to ``k``."""
        if not objectives or not window.total:
            return
        labels = window.cumulative
        offsets = _ranges(self.topics.predictions, window.offsets)
        offsets += _ranges(self.topics.outcomes, labels.offsets)
        coverage = labels.n / window.total
        for objective in objectives:
            verdict = judge(
                objective,
                lambda o=objective: measure_labels(o, system.task, window),
                label_coverage=coverage,
                needs_labels=True,
            )
            self._emit(
                system,
                objective,
                window.start,
                window.size,
                verdict,
                window.next_revision(objective.id),
                offsets,
                window.model_version,
                system.reference_hash,
                k,
            )

    def _emit(
        self,
        system: SystemSnapshot,
        objective: Objective,
        start: int,
        size: int,
        verdict: Judgement,
        revision: int,
        offsets: list[OffsetRange],
        model_version: str,
        reference_hash: str | None,
        cutoff: int | None,
    ) -> None:
        result = EvaluationResult(
            id=f"{system.system_id}:{objective.id}:v{objective.version}:{start}:r{revision}",
            system_id=system.system_id,
            model_version=model_version,
            objective_id=objective.id,
            objective_version=objective.version,
            window_start=to_datetime(start),
            window_end=to_datetime(start + size),
            metric=objective.metric,
            parameters=result_parameters(objective),
            value=verdict.value,
            threshold=objective.threshold,
            comparator=objective.comparator,
            status=verdict.status,
            n_samples=verdict.n_samples,
            label_coverage=verdict.label_coverage,
            estimated=verdict.estimated,
            approximate=verdict.approximate,
            revision=revision,
            detail=verdict.detail,
            evidence=Evidence(
                offsets=offsets,
                reference_hash=reference_hash,
                objective_version=objective.version,
                band=verdict.band,
            ),
        )
        self.store.add_results([(result, size, cutoff)], topic=self.topics.evaluations)
        self._emitted.append(_Emitted(result, size, cutoff))

    # --- checkpoint ----------------------------------------------------------------------

    def checkpoint(self, systems: Mapping[str, SystemSnapshot]) -> list[EvaluationResult]:
        """Write every partition's state into the open transaction and commit it."""
        for part in list(self.partitions.values()):
            for state in part.systems.values():
                if state.filed:
                    self.store.insert_waiting(list(state.filed.values()))
                    state.filed.clear()
            for sid, state in part.systems.items():
                self._purge(part, systems.get(sid), state)
            windows = [
                (sid, size, start, sizes.open[start].to_json())
                for sid, state in part.systems.items()
                for size, sizes in state.sizes.items()
                for start in sorted(sizes.dirty)
                if start in sizes.open
            ]
            closed = [
                (sid, size, start)
                for sid, state in part.systems.items()
                for size, sizes in state.sizes.items()
                for start in sorted(sizes.closed)
            ]
            closed += [
                (sid, size, start)
                for sid, state in part.systems.items()
                for size, start in sorted(state.gone)
            ]
            self.store.save_partition(
                part.partition,
                epoch=part.epoch,
                offsets=part.offsets,
                state=part.to_state(),
                windows=windows,
                closed=closed,
            )
            self.store.save_labels(
                part.partition,
                windows=[
                    (sid, size, start, state.labels[(size, start)].to_json())
                    for sid, state in part.systems.items()
                    for size, start in sorted(state.labels_dirty)
                    if (size, start) in state.labels
                ],
                gone=[
                    (sid, size, start)
                    for sid, state in part.systems.items()
                    for size, start in sorted(state.labels_gone)
                ],
            )
        self.store.commit()
        for part in self.partitions.values():
            part.records = 0
            for state in part.systems.values():
                for sizes in state.sizes.values():
                    sizes.dirty.clear()
                    sizes.closed.clear()
                state.gone.clear()
                state.labels_dirty.clear()
                state.labels_gone.clear()
                self._evict_labels(state)
        emitted, self._emitted = self._emitted, []
        self.tallied, self._tallies = self._tallies, {}
        self.delays, self._delays = self._delays, {}
        self.latencies, self._latencies = self._latencies, {}
        return [e.result for e in emitted]

    def _evict_labels(self, state: SystemState) -> None:
        """Keep in memory the label windows that still expect revisions soon; the others are
        in the store (just checkpointed) and are read again if a late label comes."""
        if len(state.labels) <= self.config.label_windows_in_memory:
            return
        for size, start in list(state.labels):
            sizes = state.sizes.get(size)
            if sizes is None or not (
                start in sizes.open or start in sizes.awaiting or start in sizes.pending
            ):
                del state.labels[(size, start)]

    def _purge(
        self, part: PartitionState, system: SystemSnapshot | None, state: SystemState
    ) -> None:
        """Forget join rows and label windows no label can reach any more (horizon passed)."""
        if system is None:
            return
        clock = self._label_clock(state)
        if clock is None:
            return
        widest = max([self._interval(s) for s in state.sizes] or [0.0])
        before = clock - system.label_horizon_seconds - 2 * widest - self.config.lateness_s
        unknown = self.store.purge(system.system_id, before)
        state.count("unknown_outcomes", unknown)
        state.waiting -= unknown
        if not state.waiting:
            state.waiting_ids = None
        self.store.purge_labels(part.partition, system.system_id, before)
        for size, start in [k for k in state.labels if k[1] + k[0] <= before]:
            del state.labels[(size, start)]
            state.labels_dirty.discard((size, start))
        for size, sizes in state.sizes.items():
            for start in [s for s in sizes.pending if s + size <= before]:
                del sizes.pending[start]

    def abort(self) -> None:
        """Forget everything since the last checkpoint (state is reloaded from the store)."""
        self.store.rollback()
        self.partitions.clear()
        self._emitted = []
        self._tallies = {}
        self._delays = {}
        self._latencies = {}

    @property
    def records_since_checkpoint(self) -> int:
        return sum(p.records for p in self.partitions.values())


def _by_system(system_ids: list[str]) -> dict[str, npt.NDArray[np.intp] | None]:
    """Rows of each system, in partition order (None: every row, the common case)."""
    distinct = set(system_ids)
    if len(distinct) == 1:
        return {system_ids[0]: None}
    grouped: dict[str, list[int]] = {}
    for i, sid in enumerate(system_ids):
        grouped.setdefault(sid, []).append(i)
    return {sid: np.asarray(rows, dtype=np.intp) for sid, rows in grouped.items()}


def _count(rows: npt.NDArray[np.intp] | None, size: int) -> int:
    return size if rows is None else int(rows.size)


def _take(values: list[Any], rows: npt.NDArray[np.intp] | None) -> list[Any]:
    return values if rows is None else [values[i] for i in rows.tolist()]


def _first_index(ids: list[str]) -> dict[str, int]:
    """Each id's first position, in the order of first appearance."""
    n = len(ids)
    first = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))
    if len(first) == n:
        return dict(zip(ids, range(n), strict=True))
    return dict(sorted(first.items(), key=lambda item: item[1]))


def _active(system: SystemSnapshot) -> list[Objective]:
    return [o for o in system.objectives if o.status is ObjectiveStatus.ACTIVE]


def _sizes(system: SystemSnapshot) -> list[int]:
    return sorted({o.window_seconds for o in _active(system)})


def _label_sizes(system: SystemSnapshot) -> list[int]:
    return sorted({o.window_seconds for o in _active(system) if is_label_metric(o.metric)})
