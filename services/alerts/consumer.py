"""Applying one evaluation to the nonconformity records, in one transaction.

The evaluation is marked processed, the window's verdict, the alert counters, the record, its
occurrence, the improvement-log entry and the NonconformityChanged outbox record are written
in the same commit; the StreamWorker commits the offset after that. A redelivered evaluation
(same id) or an older-or-equal revision of a window already judged changes nothing, so
replaying the whole evaluations topic changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from shared.contracts import (
    EvaluationResult,
    EvaluationStatus,
    NonconformityChange,
    NonconformityChanged,
    Objective,
    Severity,
)

from .crud import (
    DEFAULT_DUE_DAYS,
    active_silences,
    append_log,
    lock_log_head,
    next_reference,
    publish,
    snapshot,
)
from .models import (
    AlertState,
    Inhibition,
    LogHead,
    Nonconformity,
    Occurrence,
    ProcessedEvaluation,
    ReferenceCounter,
    Silence,
    WindowVerdict,
)
from .semantics import (
    AlertCounters,
    Decision,
    RevisionEffect,
    State,
    decide,
    fingerprint,
    inhibits,
    is_performance_metric,
    revision_effect,
    silence_matches,
)

__all__ = ["ACTOR", "BatchState", "apply_evaluation", "prefetch"]

ACTOR = "alerts"
"""The actor of the decisions the service takes by itself."""


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _keep_series(verdict: WindowVerdict, result: EvaluationResult) -> None:
    """What a window verdict keeps for the evidence charts (the metric per window)."""
    verdict.system_id, verdict.objective_id = result.system_id, result.objective_id
    verdict.objective_version, verdict.window_end = result.objective_version, result.window_end
    verdict.value, verdict.threshold = result.value, result.threshold


@dataclass(slots=True)
class BatchState:
    """What a batch of evaluations reads, loaded with a few IN queries up front (one round
    trip per table instead of several per evaluation) and kept current as the batch applies."""

    processed: set[str] = field(default_factory=set)
    verdicts: dict[tuple[str, datetime], WindowVerdict] = field(default_factory=dict)
    states: dict[str, AlertState] = field(default_factory=dict)
    open: dict[str, Nonconformity | None] = field(default_factory=dict)
    inhibitions: dict[tuple[str, datetime], Inhibition] = field(default_factory=dict)
    closed: dict[str, str] = field(default_factory=dict)
    """The last closed record of each fingerprint (for recurrence links)."""
    silences: list[Silence] = field(default_factory=list)
    head: LogHead | None = None
    counters: dict[int, ReferenceCounter] = field(default_factory=dict)


def prefetch(*, session: Session, results: Sequence[EvaluationResult]) -> BatchState:
    state = BatchState()
    prints = {fingerprint(r.system_id, r.objective_id, r.parameters) for r in results}
    starts = {r.window_start for r in results}
    systems = {r.system_id for r in results}
    state.processed = set(
        session.exec(
            select(ProcessedEvaluation.evaluation_id).where(
                col(ProcessedEvaluation.evaluation_id).in_([r.id for r in results])
            )
        ).all()
    )
    for verdict in session.exec(
        select(WindowVerdict).where(
            col(WindowVerdict.fingerprint).in_(prints), col(WindowVerdict.window_start).in_(starts)
        )
    ).all():
        state.verdicts[(verdict.fingerprint, _utc(verdict.window_start))] = verdict
    for alert_state in session.exec(
        select(AlertState).where(col(AlertState.fingerprint).in_(prints))
    ).all():
        state.states[alert_state.fingerprint] = alert_state
    state.open = dict.fromkeys(prints)
    for nc in session.exec(
        select(Nonconformity).where(
            col(Nonconformity.fingerprint).in_(prints),
            Nonconformity.open == True,  # noqa: E712
        )
    ).all():
        state.open[nc.fingerprint] = nc
    for inhibition in session.exec(
        select(Inhibition).where(
            col(Inhibition.system_id).in_(systems), col(Inhibition.window_start).in_(starts)
        )
    ).all():
        state.inhibitions[(inhibition.system_id, _utc(inhibition.window_start))] = inhibition
    for print_, nc_id, _closed_at in session.exec(
        select(Nonconformity.fingerprint, Nonconformity.id, Nonconformity.closed_at)
        .where(
            col(Nonconformity.fingerprint).in_(prints),
            Nonconformity.status == State.CLOSED.value,
        )
        .order_by(col(Nonconformity.closed_at))
    ).all():
        state.closed[print_] = nc_id  # ordered by closing time: the last one wins
    state.silences = list(session.exec(select(Silence)).all())
    return state


def apply_evaluation(
    *,
    session: Session,
    result: EvaluationResult,
    objective: Objective | None,
    topic: str,
    due_days: dict[str, int] | None = None,
    batch: BatchState | None = None,
) -> NonconformityChanged | None:
    """Apply one evaluation and commit. With ``batch`` (from :func:`prefetch` over the whole
    batch), reads come from it and the caller commits the batch in one transaction."""
    step = _Step(session, result, objective, topic, due_days or DEFAULT_DUE_DAYS, batch)
    if step.processed():
        return None
    change = step.run()
    if batch is None:
        session.commit()
    return change


class _Step:
    def __init__(
        self,
        session: Session,
        result: EvaluationResult,
        objective: Objective | None,
        topic: str,
        due_days: dict[str, int],
        batch: BatchState | None,
    ) -> None:
        self.batch = batch
        self.session = session
        self.result = result
        self.objective = objective
        self.topic = topic
        self.due_days = due_days
        self.print = fingerprint(result.system_id, result.objective_id, result.parameters)
        self.window = result.window_start
        self.key = (self.print, _utc(result.window_start))
        self.system_window = (result.system_id, _utc(result.window_start))

    # --- reads: from the batch state when there is one, else from the database ------------

    def processed(self) -> bool:
        """Whether the evaluation was applied before; marks it applied otherwise."""
        evaluation_id = self.result.id
        if self.batch is not None:
            if evaluation_id in self.batch.processed:
                return True
            self.batch.processed.add(evaluation_id)
        elif self.session.get(ProcessedEvaluation, evaluation_id) is not None:
            return True
        self.session.add(ProcessedEvaluation(evaluation_id=evaluation_id))
        return False

    def _inhibition(self) -> Inhibition | None:
        if self.batch is not None:
            return self.batch.inhibitions.get(self.system_window)
        return self.session.get(Inhibition, (self.result.system_id, self.window))

    def _verdict(self) -> WindowVerdict | None:
        if self.batch is not None:
            return self.batch.verdicts.get(self.key)
        return self.session.get(WindowVerdict, (self.print, self.window))

    def _alert_state(self) -> AlertState:
        if self.batch is not None:
            found = self.batch.states.get(self.print)
            if found is None:
                found = self.batch.states[self.print] = AlertState(fingerprint=self.print)
            return found
        return self.session.get(AlertState, self.print) or AlertState(fingerprint=self.print)

    def _open(self) -> Nonconformity | None:
        if self.batch is not None:
            return self.batch.open.get(self.print)
        return self.session.exec(
            select(Nonconformity).where(
                Nonconformity.fingerprint == self.print,
                Nonconformity.open == True,  # noqa: E712
            )
        ).first()

    def _set_open(self, nc: Nonconformity | None) -> None:
        if self.batch is not None:
            self.batch.open[self.print] = nc

    def run(self) -> NonconformityChanged | None:
        result, session = self.result, self.session
        if inhibits(result.status, result.metric) and self._inhibition() is None:
            inhibition = Inhibition(
                system_id=result.system_id,
                window_start=self.window,
                evaluation_id=result.id,
                reason=f"{result.metric} {result.status.value}",
            )
            session.add(inhibition)
            if self.batch is not None:
                self.batch.inhibitions[self.system_window] = inhibition
            else:
                session.flush()
        verdict = self._verdict()
        if verdict is None:
            verdict = WindowVerdict(
                fingerprint=self.print,
                window_start=self.window,
                evaluation_id=result.id,
                revision=result.revision,
                status=result.status.value,
            )
            _keep_series(verdict, result)
            session.add(verdict)
            if self.batch is not None:
                self.batch.verdicts[self.key] = verdict
            change = self._new_window()
            self._effectiveness_evidence()
            return change
        effect = revision_effect(
            applied_revision=verdict.revision,
            applied_status=EvaluationStatus(verdict.status),
            revision=result.revision,
            status=result.status,
        )
        if effect is RevisionEffect.IGNORE:
            return None
        verdict.revision, verdict.status = result.revision, result.status.value
        verdict.evaluation_id = result.id
        _keep_series(verdict, result)
        session.add(verdict)
        return self._revision(effect)

    # --- a window seen for the first time ---------------------------------------------------

    def _new_window(self) -> NonconformityChanged | None:
        result, session, objective = self.result, self.session, self.objective
        state = self._alert_state()
        nc = self._open()
        counters = AlertCounters(state.consecutive_breaches, state.consecutive_passes)
        decision = decide(
            counters,
            result.status,
            open_nonconformity=nc is not None,
            condition_cleared=nc.condition_cleared if nc is not None else False,
            pending_windows=objective.pending_windows if objective else 1,
            clearing_windows=objective.clearing_windows if objective else 1,
        )
        state.consecutive_breaches = counters.consecutive_breaches
        state.consecutive_passes = counters.consecutive_passes
        session.add(state)
        if decision is Decision.RAISE:
            return self._raise(by_revision=False)
        if decision is Decision.OCCURRENCE and nc is not None:
            return self._occurrence(nc, by_revision=False)
        if decision is Decision.CLEAR and nc is not None:
            before = snapshot(nc)
            nc.condition_cleared = True
            nc.last_evaluation_id = result.id
            nc.updated_at = datetime.now(UTC)
            session.add(nc)
            self._log("cleared", nc, before, {"passing_windows": counters.consecutive_passes})
            return self._publish(nc, NonconformityChange.CLEARED)
        return None

    def _effectiveness_evidence(self) -> None:
        """Attach this window to the review evidence of a record whose actions are all
        implemented: met for ``needed`` consecutive windows, or breached again."""
        result = self.result
        if result.status not in (EvaluationStatus.PASS, EvaluationStatus.BREACH):
            return
        nc = self._open()
        evidence = dict(nc.review_evidence) if nc is not None else {}
        if nc is None or evidence.get("status") != "watching":
            return
        if _utc(result.window_start) < datetime.fromisoformat(str(evidence["since"])):
            return
        before = dict(evidence)
        window = {
            "evaluation_id": result.id,
            "window_start": _utc(result.window_start).isoformat(),
            "status": result.status.value,
            "value": result.value,
        }
        evidence["windows"] = [*evidence["windows"], window]
        if result.status is EvaluationStatus.BREACH:
            evidence.update(status="breached", breached=True)
        else:
            evidence["consecutive_met"] = int(evidence["consecutive_met"]) + 1
            if evidence["consecutive_met"] >= int(evidence["needed"]):
                evidence["status"] = "met"
        nc.review_evidence = evidence
        self.session.add(nc)
        if evidence["status"] != "watching":
            self._append("effectiveness_evidence", nc.id, {"status": before["status"]}, evidence)

    # --- revisions ----------------------------------------------------------------------------

    def _revision(self, effect: RevisionEffect) -> NonconformityChanged | None:
        result, session = self.result, self.session
        occurrence = session.exec(
            select(Occurrence)
            .join(Nonconformity, col(Nonconformity.id) == col(Occurrence.nonconformity_id))
            .where(
                Nonconformity.fingerprint == self.print,
                Nonconformity.open == True,  # noqa: E712
                Occurrence.window_start == self.window,
                Occurrence.withdrawn == False,  # noqa: E712
            )
        ).first()
        if effect is RevisionEffect.SAME:
            if occurrence is not None:  # newer evidence for the same verdict
                occurrence.evaluation_id = result.id
                occurrence.revision = result.revision
                occurrence.value = result.value
                session.add(occurrence)
            return None
        if effect is RevisionEffect.NOW_BREACH:
            nc = self._open()
            if nc is not None:
                return self._occurrence(nc, by_revision=True)
            if self._pending_met():
                return self._raise(by_revision=True)
            return None
        # NO_LONGER_BREACH: withdraw that window's occurrence
        if occurrence is None:
            return None
        nc = session.get(Nonconformity, occurrence.nonconformity_id)
        assert nc is not None
        before = snapshot(nc)
        occurrence.withdrawn = True
        session.add(occurrence)
        nc.occurrences = max(nc.occurrences - 1, 0)
        nc.updated_at = datetime.now(UTC)
        detail = {
            "window_start": _utc(self.window).isoformat(),
            "evaluation_id": result.id,
            "revision": result.revision,
        }
        if nc.occurrences == 0 and nc.status == State.RAISED.value:
            nc.status = State.WITHDRAWN.value
            nc.open = False
            self._set_open(None)
            nc.closed_at = nc.updated_at
            session.add(nc)
            self._log("withdrawn", nc, before, {**detail, "why": "its only breach was revised"})
            change = NonconformityChange.STATUS_CHANGED
        else:
            session.add(nc)
            self._log("occurrence_withdrawn", nc, before, detail)
            change = NonconformityChange.OCCURRENCE
        return self._publish(nc, change)

    def _pending_met(self) -> bool:
        """A window revised into a breach raises when it ends a run of pending breaches."""
        pending = self.objective.pending_windows if self.objective else 1
        if pending <= 1:
            return True
        earlier = self.session.exec(
            select(WindowVerdict.status)
            .where(
                WindowVerdict.fingerprint == self.print,
                col(WindowVerdict.window_start) < self.window,
            )
            .order_by(col(WindowVerdict.window_start).desc())
            .limit(pending - 1)
        ).all()
        return len(earlier) == pending - 1 and all(s == "breach" for s in earlier)

    # --- effects ------------------------------------------------------------------------------

    def _suppressed(self, severity: str) -> tuple[str, dict[str, object]] | None:
        """Why a raise is held back: an inhibition of the system's window, or a silence."""
        result, session = self.result, self.session
        if is_performance_metric(result.metric):
            inhibition = self._inhibition()
            if inhibition is not None:
                return "raise_inhibited", {
                    "by_evaluation": inhibition.evaluation_id,
                    "because": inhibition.reason,
                }
        labels = {
            "system_id": result.system_id,
            "objective_id": result.objective_id,
            "metric": result.metric,
            "severity": severity,
        }
        if self.batch is not None:
            at = _utc(result.window_end)
            silences = [
                s for s in self.batch.silences if _utc(s.starts_at) <= at < _utc(s.expires_at)
            ]
        else:
            silences = list(active_silences(session=session, at=result.window_end))
        for silence in silences:
            if silence_matches(silence.matchers, labels):
                return "raise_silenced", {"silence_id": silence.id, "reason": silence.reason}
        return None

    def _raise(self, *, by_revision: bool) -> NonconformityChanged | None:
        result, session, objective = self.result, self.session, self.objective
        severity = (objective.severity if objective else Severity.MINOR).value
        suppressed = self._suppressed(severity)
        if suppressed is not None:
            kind, why = suppressed
            self._append(kind, f"fingerprint:{self.print}", None, {**self._evidence(), **why})
            return None
        previous = self._last_closed()
        now = datetime.now(UTC)
        nc = Nonconformity(
            id=uuid.uuid4().hex,
            fingerprint=self.print,
            system_id=result.system_id,
            objective_id=result.objective_id,
            objective_version=result.objective_version,
            metric=result.metric,
            severity=severity,
            classification=severity,
            first_evaluation_id=result.id,
            last_evaluation_id=result.id,
            last_value=result.value,
            threshold=result.threshold,
            comparator=result.comparator.value,
            reference=self._reference(now.year),
            title=f"{result.system_id}: {result.objective_id} ({result.metric}) breached",
            owner=objective.owner if objective else None,
            due_at=now + timedelta(days=self.due_days[severity]),
            recurrence_of=previous,
            raised_at=now,
            updated_at=now,
        )
        session.add(nc)
        self._set_open(nc)
        session.add(self._occurrence_row(nc))
        self._log(
            "raised",
            nc,
            None,
            {"by_revision": by_revision, "recurrence_of": nc.recurrence_of},
        )
        return self._publish(nc, NonconformityChange.RAISED)

    def _occurrence(self, nc: Nonconformity, *, by_revision: bool) -> NonconformityChanged:
        result, session = self.result, self.session
        before = snapshot(nc)
        nc.occurrences += 1
        nc.condition_cleared = False
        nc.last_evaluation_id = result.id
        nc.last_value = result.value
        nc.updated_at = datetime.now(UTC)
        session.add(nc)
        session.add(self._occurrence_row(nc))
        self._log("occurrence", nc, before, {"by_revision": by_revision})
        return self._publish(nc, NonconformityChange.OCCURRENCE)

    def _occurrence_row(self, nc: Nonconformity) -> Occurrence:
        result = self.result
        return Occurrence(
            nonconformity_id=nc.id,
            evaluation_id=result.id,
            objective_version=result.objective_version,
            window_start=result.window_start,
            window_end=result.window_end,
            revision=result.revision,
            value=result.value,
        )

    def _evidence(self) -> dict[str, object]:
        result = self.result
        return {
            "evaluation_id": result.id,
            "system_id": result.system_id,
            "objective_id": result.objective_id,
            "objective_version": result.objective_version,
            "window_start": _utc(result.window_start).isoformat(),
            "window_end": _utc(result.window_end).isoformat(),
            "revision": result.revision,
            "value": result.value,
        }

    def _publish(self, nc: Nonconformity, change: NonconformityChange) -> NonconformityChanged:
        return publish(
            session=self.session,
            nc=nc,
            change=change,
            topic=self.topic,
            evaluation_id=self.result.id,
        )

    def _log(
        self,
        kind: str,
        nc: Nonconformity,
        before: dict[str, object] | None,
        extra: dict[str, object],
    ) -> None:
        self._append(kind, nc.id, before, {**snapshot(nc), **self._evidence(), **extra})

    def _append(self, kind: str, subject: str, before: object, after: object) -> None:
        head = None
        if self.batch is not None:
            if self.batch.head is None:
                self.batch.head = lock_log_head(session=self.session)
            head = self.batch.head
        append_log(
            session=self.session,
            actor=ACTOR,
            kind=kind,
            subject=subject,
            before=before,
            after=after,
            head=head,
        )

    def _last_closed(self) -> str | None:
        if self.batch is not None:
            return self.batch.closed.get(self.print)
        previous = self.session.exec(
            select(Nonconformity.id)
            .where(
                Nonconformity.fingerprint == self.print,
                Nonconformity.status == State.CLOSED.value,
            )
            .order_by(col(Nonconformity.closed_at).desc())
        ).first()
        return previous

    def _reference(self, year: int) -> str:
        if self.batch is None:
            return next_reference(session=self.session, year=year)
        counter = self.batch.counters.get(year)
        if counter is None:
            counter = self.session.get(ReferenceCounter, year, with_for_update=True)
            counter = counter or ReferenceCounter(year=year, last=0)
            self.batch.counters[year] = counter
        counter.last += 1
        self.session.add(counter)
        return f"NC-{year}-{counter.last:04d}"
