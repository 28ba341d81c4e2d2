"""Closing ended windows: the evaluator's judgement step.

Once a window of an active objective has ended (the watermark passed its end), its
predictions and the outcomes joined to them are read from the durable join state, the metric
is judged, and the EvaluationResult is written together with its outbox record in one
transaction; the outbox relay publishes it. A window is closed once per objective: the
newest evaluated window end is the resume point after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, func, select

from shared.bus import Topics
from shared.contracts import (
    EvaluationResult,
    Evidence,
    Objective,
    OffsetRange,
    SystemSnapshot,
    encode,
)
from shared.db import Database
from shared.outbox import OutboxRelay, enqueue
from shared.registry_view import RegistryView

from .consumer import utc
from .judge import WindowData, judge
from .metrics import EvaluatorMetrics
from .models import EvaluationRow, OutcomeRow, PredictionRow
from .settings import Settings
from .windows import closable_until, window_start

__all__ = ["WindowCloser"]

log = logging.getLogger(__name__)


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _ranges(topic: str, rows: list[tuple[int, int]]) -> list[OffsetRange]:
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, offset in rows:
        by_partition[partition].append(offset)
    return [
        OffsetRange(topic=topic, partition=p, first=min(offs), last=max(offs))
        for p, offs in sorted(by_partition.items())
    ]


class WindowCloser:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        view: RegistryView,
        topics: Topics,
        relay: OutboxRelay,
        metrics: EvaluatorMetrics,
    ) -> None:
        self._settings = settings
        self._db = db
        self._view = view
        self._topics = topics
        self._relay = relay
        self._metrics = metrics
        self._max_ts: dict[str, datetime] = {}
        self._last_arrival: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def observe(self, system_id: str, newest: datetime) -> None:
        """Advance the system's event-time watermark (called after events are durable)."""
        current = self._max_ts.get(system_id)
        if current is None or newest > current:
            self._max_ts[system_id] = newest
        self._last_arrival[system_id] = time.monotonic()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="evaluator:closer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("closing windows failed; retrying next tick")
            await asyncio.sleep(self._settings.tick_s)

    async def tick(self) -> int:
        """Close every window that has ended; returns how many evaluations were written."""
        if not self._view.loaded:
            return 0
        now = datetime.now(UTC)
        written = 0
        for system in list(self._view.systems.values()):
            last = self._last_arrival.get(system.system_id)
            idle = last is None or time.monotonic() - last >= self._settings.idle_close_s
            until = closable_until(
                max_event_ts=self._max_ts.get(system.system_id),
                lateness_s=self._settings.allowed_lateness_s,
                idle=idle,
                now=now,
            )
            if until is None:
                continue
            for objective in self._view.active_objectives(system.system_id):
                results = await self._db.run(self._close, system, objective, until)
                for result in results:
                    self._metrics.record(result)
                written += len(results)
        if written:
            self._relay.notify()
        return written

    def _close(
        self, system: SystemSnapshot, objective: Objective, until: datetime
    ) -> list[EvaluationResult]:
        size = objective.window_seconds
        with self._db.session() as session:
            last_end = session.exec(
                select(func.max(EvaluationRow.window_end)).where(
                    EvaluationRow.system_id == system.system_id,
                    EvaluationRow.objective_id == objective.id,
                )
            ).one()
            stmt = select(PredictionRow).where(
                PredictionRow.system_id == system.system_id,
                col(PredictionRow.ts) < utc(until),
            )
            if last_end is not None:
                stmt = stmt.where(col(PredictionRow.ts) >= last_end)
            rows = session.exec(stmt.order_by(col(PredictionRow.ts))).all()
            windows: dict[datetime, list[PredictionRow]] = defaultdict(list)
            for row in rows:
                windows[window_start(_aware(row.ts), size)].append(row)
            results = []
            for start in sorted(windows):
                end = start + timedelta(seconds=size)
                if end > until:
                    break
                results.append(
                    self._evaluate(session, system, objective, start, end, windows[start])
                )
            session.commit()
            return results

    def _evaluate(
        self,
        session: Session,
        system: SystemSnapshot,
        objective: Objective,
        start: datetime,
        end: datetime,
        predictions: list[PredictionRow],
    ) -> EvaluationResult:
        ids = [p.event_id for p in predictions]
        outcomes = session.exec(
            select(OutcomeRow).where(
                OutcomeRow.system_id == system.system_id, col(OutcomeRow.prediction_id).in_(ids)
            )
        ).all()
        actual_of = {o.prediction_id: o for o in outcomes}
        data = WindowData(
            predictions=[p.prediction for p in predictions],
            actuals=[
                actual_of[p.event_id].actual if p.event_id in actual_of else None
                for p in predictions
            ],
        )
        verdict = judge(objective, data)
        model_version = Counter(p.model_version for p in predictions).most_common(1)[0][0]
        revision = 0
        result = EvaluationResult(
            id=f"{system.system_id}:{objective.id}:v{objective.version}:"
            f"{int(start.timestamp())}:r{revision}",
            system_id=system.system_id,
            model_version=model_version,
            objective_id=objective.id,
            objective_version=objective.version,
            window_start=start,
            window_end=end,
            metric=objective.metric,
            parameters=objective.parameters,
            value=verdict.value,
            threshold=objective.threshold,
            comparator=objective.comparator,
            status=verdict.status,
            n_samples=verdict.n_samples,
            label_coverage=verdict.label_coverage,
            revision=revision,
            detail=verdict.detail,
            evidence=Evidence(
                offsets=_ranges(
                    self._topics.predictions, [(p.partition, p.offset) for p in predictions]
                )
                + _ranges(self._topics.outcomes, [(o.partition, o.offset) for o in outcomes]),
                reference_hash=system.reference_hash,
                objective_version=objective.version,
            ),
        )
        session.add(
            EvaluationRow(
                id=result.id,
                system_id=result.system_id,
                objective_id=result.objective_id,
                objective_version=result.objective_version,
                window_start=utc(start),
                window_end=utc(end),
                revision=revision,
                status=result.status.value,
                value=result.value,
                payload=result.model_dump(mode="json"),
            )
        )
        enqueue(
            session,
            service="evaluator",
            topic=self._topics.evaluations,
            key=system.system_id.encode(),
            value=encode(result),
        )
        return result
