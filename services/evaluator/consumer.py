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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from shared.bus import Decoded, Topics
from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    Evidence,
    Objective,
    ObjectiveStatus,
    OffsetRange,
    OutcomeEvent,
    PredictionEvent,
    SystemSnapshot,
)

from .columns import ColumnBatch, json_array
from .judge import Judgement, LabelRows, Measurement, judge, measure_labels, measure_window
from .plan import WindowPlan, is_label_metric
from .references import ReferenceCache
from .store import EvaluatorStore
from .window import WindowState
from .windows import (
    label_clock,
    label_times,
    revision_index,
    running_watermark,
    to_datetime,
    window_starts,
)

__all__ = ["PartitionState", "ProcessorConfig", "StreamProcessor", "SystemState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    lateness_s: float = 5.0
    label_wait_s: float = 300.0
    revision_interval_s: float = 0.0
    max_empty_windows: int = 1_000


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


@dataclass
class SystemState:
    predictions: float | None = None
    """P: the newest prediction time seen (epoch s)."""
    outcomes: float | None = None
    """O: the newest outcome time seen."""
    counters: dict[str, int] = field(default_factory=dict)
    sizes: dict[int, SizeState] = field(default_factory=dict)
    last_arrival: float = 0.0

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.counters[name] = self.counters.get(name, 0) + n

    def to_state(self) -> dict[str, Any]:
        return {
            "P": self.predictions,
            "O": self.outcomes,
            "counters": self.counters,
            "sizes": {str(size): s.to_state() for size, s in self.sizes.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SystemState:
        return cls(
            predictions=state.get("P"),
            outcomes=state.get("O"),
            counters={str(k): int(v) for k, v in state.get("counters", {}).items()},
            sizes={int(k): SizeState.from_state(v) for k, v in state.get("sizes", {}).items()},
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


def _ranges(topic: str, partitions: np.ndarray, offsets: np.ndarray) -> list[OffsetRange]:
    out = []
    for p in sorted(set(partitions.tolist())):
        chosen = offsets[partitions == p]
        out.append(
            OffsetRange(
                topic=topic, partition=int(p), first=int(chosen.min()), last=int(chosen.max())
            )
        )
    return out


class StreamProcessor:
    def __init__(
        self,
        *,
        store: EvaluatorStore,
        topics: Topics,
        references: ReferenceCache,
        config: ProcessorConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.topics = topics
        self.references = references
        self.config = config
        self.clock = clock
        self.partitions: dict[int, PartitionState] = {}
        self.fenced: set[int] = set()
        self._emitted: list[_Emitted] = []
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
        predictions: Sequence[Decoded[PredictionEvent]],
        outcomes: Sequence[Decoded[OutcomeEvent]],
        systems: Mapping[str, SystemSnapshot],
    ) -> None:
        """Apply one partition's new records (already filtered by ``is_new``)."""
        part = self.partition(partition)
        now = self.clock()
        touched: dict[str, SystemState] = {}
        for sid, items in _by_system(predictions).items():
            snapshot = systems.get(sid)
            if snapshot is None or snapshot.status != "active":
                part.counters["unknown_system_events"] = part.counters.get(
                    "unknown_system_events", 0
                ) + len(items)
                continue
            state = part.systems.setdefault(sid, SystemState())
            state.last_arrival = now
            self._predictions(part, snapshot, state, items)
            touched[sid] = state
        for sid, outs in _by_system(outcomes).items():
            snapshot = systems.get(sid)
            if snapshot is None or snapshot.status != "active":
                part.counters["unknown_system_events"] = part.counters.get(
                    "unknown_system_events", 0
                ) + len(outs)
                continue
            state = part.systems.setdefault(sid, SystemState())
            state.last_arrival = now
            self._outcomes(snapshot, state, outs)
            touched[sid] = state
        for sid, state in touched.items():
            self._evaluate(systems[sid], state)
        consumed: list[tuple[str, Sequence[Decoded[Any]]]] = [
            (self.topics.predictions, predictions),
            (self.topics.outcomes, outcomes),
        ]
        for topic, records in consumed:
            if records:
                last = max(d.record.offset for d in records)
                part.offsets[topic] = max(part.offsets.get(topic, 0), last + 1)
        part.records += len(predictions) + len(outcomes)

    def advance(self, partition: int, next_offsets: Mapping[str, int]) -> None:
        """Record offsets consumed without effect (dead-lettered records) as done too."""
        part = self.partition(partition)
        for topic, offset in next_offsets.items():
            part.offsets[topic] = max(part.offsets.get(topic, 0), offset)

    def is_new(self, topic: str, partition: int, offset: int) -> bool:
        """False for a record an earlier checkpoint already covers (a redelivery)."""
        if partition in self.fenced:
            return False
        return offset >= self.partition(partition).offsets.get(topic, 0)

    def advance_idle(
        self, systems: Mapping[str, SystemSnapshot], *, idle_s: float, wall_clock_s: float
    ) -> int:
        """Move the watermarks of systems silent for ``idle_s`` to wall-clock time."""
        advanced = 0
        now = self.clock()
        for part in self.partitions.values():
            for sid, state in part.systems.items():
                snapshot = systems.get(sid)
                if snapshot is None or now - state.last_arrival < idle_s:
                    continue
                if state.predictions is not None and state.predictions >= wall_clock_s:
                    continue
                state.predictions = wall_clock_s
                state.outcomes = max(state.outcomes or wall_clock_s, wall_clock_s)
                self._evaluate(snapshot, state, idle_now=wall_clock_s)
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
        items: Sequence[Decoded[PredictionEvent]],
    ) -> None:
        events = [d.value for d in items]
        batch = ColumnBatch(events)
        n = batch.size
        offsets = np.fromiter((d.record.offset for d in items), dtype=np.int64, count=n)
        seen, state.predictions = running_watermark(state.predictions, batch.ts)
        state.count("predictions", n)
        duplicate = np.zeros(n, dtype=np.bool_)
        first: dict[str, int] = {}
        for i, event in enumerate(events):
            if event.event_id in first:
                duplicate[i] = True
            else:
                first[event.event_id] = i
        sid = system.system_id
        rows = [
            (
                sid,
                events[i].event_id,
                float(batch.ts[i]),
                True,
                None if math.isinf(seen[i]) else float(seen[i]),
                events[i].model_version,
                orjson.dumps(events[i].prediction).decode(),
                None if events[i].scores is None else orjson.dumps(events[i].scores).decode(),
                orjson.dumps(events[i].attributes).decode() if events[i].attributes else None,
                part.partition,
                int(offsets[i]),
            )
            for i in first.values()
        ]
        joined: list[tuple[int, float]] = []
        i_row = {row[1]: j for j, row in enumerate(rows)}
        if self.store.insert_predictions(rows) < len(rows):
            found = self.store.lookup(sid, list(first))
            fills, expired = [], []
            for event_id, i in first.items():
                info = found.get(event_id)
                if info is None or not info.has_prediction:
                    if info is None:
                        continue
                    fills.append((*rows[i_row[event_id]][2:], sid, event_id))
                    label_time = info.label_time
                    if label_time is None:
                        continue
                    if label_time > float(batch.ts[i]) + system.label_horizon_seconds:
                        expired.append((sid, event_id))
                        state.count("expired_outcomes")
                    else:
                        joined.append((i, label_time))
                        state.count("labelled")
                elif (info.pred_partition, info.pred_offset) != (part.partition, int(offsets[i])):
                    duplicate[i] = True
            self.store.fill_predictions(fills)
            self.store.clear_labels(expired)
        state.count("duplicate_predictions", int(duplicate.sum()))
        valid = ~duplicate
        lateness = self.config.lateness_s
        for size in _sizes(system):
            sizes = state.sizes.setdefault(size, SizeState())
            starts = window_starts(batch.ts, size)
            accepted = valid & (seen < starts + size + lateness)
            state.count(f"late_{size}s", int((valid & ~accepted).sum()))
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
        for i, label_time in joined:
            self._mark_label(system, state, float(batch.ts[i]), _finite(seen[i]), label_time)

    # --- outcomes ------------------------------------------------------------------------

    def _outcomes(
        self, system: SystemSnapshot, state: SystemState, items: Sequence[Decoded[OutcomeEvent]]
    ) -> None:
        events = [d.value for d in items]
        n = len(events)
        ts = np.fromiter((e.timestamp.timestamp() for e in events), dtype=np.float64, count=n)
        times = label_times(state.outcomes, ts, self.config.lateness_s)
        _, state.outcomes = running_watermark(state.outcomes, ts)
        state.count("outcomes", n)
        sid = system.system_id
        first: dict[str, int] = {}
        for i, event in enumerate(events):
            if event.prediction_id in first:
                state.count("duplicate_outcomes")
            else:
                first[event.prediction_id] = i
        found = self.store.lookup(sid, list(first))
        labels, waiting = [], []
        horizon = system.label_horizon_seconds
        for prediction_id, i in first.items():
            event, record = events[i], items[i].record
            info = found.get(prediction_id)
            actual = orjson.dumps(event.actual).decode()
            label_time = float(times[i])
            if info is None:
                waiting.append(
                    (
                        sid,
                        prediction_id,
                        float(ts[i]),
                        False,
                        actual,
                        event.event_id,
                        float(ts[i]),
                        label_time,
                        record.partition,
                        record.offset,
                    )
                )
                continue
            if info.labelled or not info.has_prediction:
                state.count("duplicate_outcomes")
                continue
            if label_time > info.ts + horizon:
                state.count("expired_outcomes")
                continue
            labels.append(
                (
                    actual,
                    event.event_id,
                    float(ts[i]),
                    label_time,
                    record.partition,
                    record.offset,
                    sid,
                    prediction_id,
                )
            )
            state.count("labelled")
            self._mark_label(system, state, info.ts, info.arrival_wm, label_time)
        self.store.label(labels)
        self.store.insert_outcomes(waiting)
        state.count("waiting_outcomes", len(waiting))

    def _mark_label(
        self,
        system: SystemSnapshot,
        state: SystemState,
        ts: float,
        arrival_wm: float | None,
        label_time: float,
    ) -> None:
        """A label joined to a prediction: note the revision cut-off it is due at."""
        lateness = self.config.lateness_s
        for size in _label_sizes(system):
            start = int(math.floor(ts / size) * size)
            end = start + size
            if arrival_wm is not None and arrival_wm >= end + lateness:
                continue  # the prediction was late for this window
            sizes = state.sizes.setdefault(size, SizeState())
            k = revision_index(label_time, end, self._interval(size))
            if start in sizes.open or start in sizes.awaiting:
                if k == 0:
                    continue
                entry = sizes.pending.setdefault(start, {"k_last": None, "due": []})
            else:
                entry = sizes.pending.get(start)  # type: ignore[assignment]
                if entry is None:
                    k_last = self.store.last_cutoff(system.system_id, size, start)
                    if k_last is None:
                        continue  # never evaluated for labels (no label objective then)
                    entry = sizes.pending[start] = {"k_last": k_last, "due": []}
                if entry["k_last"] is not None:
                    k = max(k, int(entry["k_last"]) + 1)
            due: list[int] = entry["due"]
            at = bisect.bisect_left(due, k)
            if at == len(due) or due[at] != k:
                due.insert(at, k)

    def _interval(self, size: int) -> float:
        return max(float(size), self.config.revision_interval_s)

    # --- closing windows and label revisions --------------------------------------------

    def _evaluate(
        self, system: SystemSnapshot, state: SystemState, idle_now: float | None = None
    ) -> None:
        sizes = _sizes(system)
        for size in list(state.sizes):
            if size not in sizes:
                dropped = state.sizes.pop(size)
                for start in dropped.open:
                    dropped.closed.add(start)
                continue
        for size in sizes:
            if size in state.sizes:
                self._close(system, state, size, state.sizes[size])
        clock = label_clock(
            state.predictions,
            state.outcomes,
            lateness=self.config.lateness_s,
            label_wait=self.config.label_wait_s,
        )
        if clock is None:
            return
        for size in _label_sizes(system):
            if size in state.sizes:
                self._labels(system, state.sizes[size], size, clock, idle_now)

    def _close(
        self, system: SystemSnapshot, state: SystemState, size: int, sizes: SizeState
    ) -> None:
        if state.predictions is None or sizes.closed_until is None:
            return
        limit = state.predictions - self.config.lateness_s
        last_end = int(math.floor(limit / size) * size)
        ready = sorted(s for s in sizes.open if s + size <= limit)
        empty = (
            [s for s in range(sizes.closed_until, last_end, size) if s not in sizes.open]
            if last_end > sizes.closed_until
            else []
        )
        if len(empty) > self.config.max_empty_windows:
            state.count("empty_windows_skipped", len(empty) - self.config.max_empty_windows)
            empty = empty[: self.config.max_empty_windows]
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

    def _emit_empty(
        self, system: SystemSnapshot, objective: Objective, start: int, size: int
    ) -> None:
        verdict = judge(objective, lambda: Measurement(0.0, 0))
        self._emit(system, objective, start, size, verdict, 0, [], "", system.reference_hash, None)

    def _labels(
        self,
        system: SystemSnapshot,
        sizes: SizeState,
        size: int,
        clock: float,
        idle_now: float | None,
    ) -> None:
        """Revision 0 of windows whose end the label clock passed (labels timed before the
        end; when the idle timer closed it, every label that arrived), then revisions of
        windows at each passed cut-off where new labels are due."""
        objectives = [
            o for o in _active(system) if o.window_seconds == size and is_label_metric(o.metric)
        ]
        interval = self._interval(size)
        while sizes.awaiting and sizes.awaiting[0] + size <= clock:
            start = sizes.awaiting.pop(0)
            end = start + size
            k, cutoff = 0, float(end)
            if idle_now is not None and idle_now > end:
                k, cutoff = math.floor((idle_now - end) / interval), idle_now
            self._label_revisions(system, objectives, size, start, [(k, cutoff)])
            entry = sizes.pending.get(start)
            if entry is not None:
                entry["k_last"] = k
                entry["due"] = [d for d in entry["due"] if d > k]
                if not entry["due"]:
                    del sizes.pending[start]
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
            cutoffs = [(k, end + k * interval) for k in due]
            self._label_revisions(system, objectives, size, start, cutoffs)
            entry["due"] = [k for k in entry["due"] if k > k_now]
            entry["k_last"] = due[-1]
            if not entry["due"]:
                del sizes.pending[start]

    def _label_revisions(
        self,
        system: SystemSnapshot,
        objectives: Sequence[Objective],
        size: int,
        start: int,
        cutoffs: Sequence[tuple[int, float]],
    ) -> None:
        if not objectives:
            return
        end = start + size
        raw = self.store.window_rows(system.system_id, start, end, end + self.config.lateness_s)
        if not raw:
            return
        predicted = np.asarray(json_array([r[0] for r in raw]), dtype=object)
        actual_all = json_array([r[3] for r in raw])
        label_time = np.asarray([math.inf if r[4] is None else r[4] for r in raw], dtype=np.float64)
        ts = np.asarray([r[5] for r in raw], dtype=np.float64)
        outcome_ts = np.asarray([math.nan if r[6] is None else r[6] for r in raw], dtype=np.float64)
        scores = json_array([r[1] for r in raw])
        attributes = json_array([r[2] for r in raw])
        versions = [r[7] or "" for r in raw]
        pred_p = np.asarray([r[8] for r in raw], dtype=np.int64)
        pred_o = np.asarray([r[9] for r in raw], dtype=np.int64)
        model_version = max(set(versions), key=lambda v: (versions.count(v), v))
        for k, cutoff in cutoffs:
            labelled = label_time < cutoff
            actual = np.asarray(
                [a if m else None for a, m in zip(actual_all, labelled.tolist(), strict=True)],
                dtype=object,
            )
            rows = LabelRows(
                predicted=predicted,
                actual=actual,
                scores=scores,
                attributes=attributes,
                delay_s=np.where(labelled, outcome_ts - ts, math.nan),
            )
            offsets = _ranges(self.topics.predictions, pred_p, pred_o)
            if labelled.any():
                idx = np.flatnonzero(labelled)
                offsets += _ranges(
                    self.topics.outcomes,
                    np.asarray([raw[i][10] for i in idx], dtype=np.int64),
                    np.asarray([raw[i][11] for i in idx], dtype=np.int64),
                )
            coverage = rows.coverage
            for objective in objectives:
                verdict = judge(
                    objective,
                    lambda o=objective, r=rows: measure_labels(o, system.task, r),
                    label_coverage=coverage,
                    needs_labels=True,
                )
                last = self.store.last_revision(system.system_id, objective.id, size, start)
                revision = 0 if last is None else last + 1
                self._emit(
                    system,
                    objective,
                    start,
                    size,
                    verdict,
                    revision,
                    offsets,
                    model_version,
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
            parameters=objective.parameters,
            value=verdict.value,
            threshold=objective.threshold,
            comparator=objective.comparator,
            status=verdict.status,
            n_samples=verdict.n_samples,
            label_coverage=verdict.label_coverage,
            estimated=verdict.estimated,
            revision=revision,
            detail=verdict.detail,
            evidence=Evidence(
                offsets=offsets, reference_hash=reference_hash, objective_version=objective.version
            ),
        )
        self.store.add_results([(result, size, cutoff)], topic=self.topics.evaluations)
        self._emitted.append(_Emitted(result, size, cutoff))

    # --- checkpoint ----------------------------------------------------------------------

    def checkpoint(self, systems: Mapping[str, SystemSnapshot]) -> list[EvaluationResult]:
        """Write every partition's state into the open transaction and commit it."""
        for part in list(self.partitions.values()):
            for sid, state in part.systems.items():
                self._purge(systems.get(sid), state)
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
            self.store.save_partition(
                part.partition,
                epoch=part.epoch,
                offsets=part.offsets,
                state=part.to_state(),
                windows=windows,
                closed=closed,
            )
        self.store.commit()
        for part in self.partitions.values():
            part.records = 0
            for state in part.systems.values():
                for sizes in state.sizes.values():
                    sizes.dirty.clear()
                    sizes.closed.clear()
        emitted, self._emitted = self._emitted, []
        return [e.result for e in emitted]

    def _purge(self, system: SystemSnapshot | None, state: SystemState) -> None:
        if system is None:
            return
        clock = label_clock(
            state.predictions,
            state.outcomes,
            lateness=self.config.lateness_s,
            label_wait=self.config.label_wait_s,
        )
        if clock is None:
            return
        widest = max([self._interval(s) for s in state.sizes] or [0.0])
        before = clock - system.label_horizon_seconds - 2 * widest - self.config.lateness_s
        state.count("unknown_outcomes", self.store.purge(system.system_id, before))

    def abort(self) -> None:
        """Forget everything since the last checkpoint (state is reloaded from the store)."""
        self.store.rollback()
        self.partitions.clear()
        self._emitted = []

    @property
    def records_since_checkpoint(self) -> int:
        return sum(p.records for p in self.partitions.values())


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else float(value)


def _by_system(items: Sequence[Decoded[Any]]) -> dict[str, list[Decoded[Any]]]:
    grouped: dict[str, list[Decoded[Any]]] = {}  # insertion order: the partition's order
    for item in items:
        grouped.setdefault(item.value.system_id, []).append(item)
    return grouped


def _active(system: SystemSnapshot) -> list[Objective]:
    return [o for o in system.objectives if o.status is ObjectiveStatus.ACTIVE]


def _sizes(system: SystemSnapshot) -> list[int]:
    return sorted({o.window_seconds for o in _active(system)})


def _label_sizes(system: SystemSnapshot) -> list[int]:
    return sorted({o.window_seconds for o in _active(system) if is_label_metric(o.metric)})
