"""Applying one evaluation to the nonconformity records, in one transaction.

The evaluation is marked processed, the alert counters and the nonconformity are updated and
the NonconformityChanged record is put in the outbox in the same commit; the StreamWorker
commits the offset after that. A redelivered evaluation is recognised and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel import Session, select

from shared.contracts import (
    EvaluationResult,
    NonconformityChange,
    NonconformityChanged,
    Objective,
    Severity,
    encode,
)
from shared.outbox import enqueue

from .models import AlertState, Nonconformity, ProcessedEvaluation
from .semantics import AlertCounters, Decision, decide, fingerprint

__all__ = ["apply_evaluation"]

_CHANGE = {
    Decision.RAISE: NonconformityChange.RAISED,
    Decision.OCCURRENCE: NonconformityChange.OCCURRENCE,
    Decision.CLEAR: NonconformityChange.CLEARED,
}


def apply_evaluation(
    *, session: Session, result: EvaluationResult, objective: Objective | None, topic: str
) -> NonconformityChanged | None:
    if session.get(ProcessedEvaluation, result.id) is not None:
        return None
    session.add(ProcessedEvaluation(evaluation_id=result.id))
    print_ = fingerprint(result.system_id, result.objective_id, result.parameters)
    state = session.get(AlertState, print_) or AlertState(fingerprint=print_)
    nc = session.exec(
        select(Nonconformity).where(
            Nonconformity.fingerprint == print_,
            Nonconformity.open == True,  # noqa: E712
        )
    ).first()
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
    now = datetime.now(UTC)
    if decision is Decision.RAISE:
        nc = Nonconformity(
            id=uuid.uuid4().hex,
            fingerprint=print_,
            system_id=result.system_id,
            objective_id=result.objective_id,
            objective_version=result.objective_version,
            metric=result.metric,
            severity=(objective.severity if objective else Severity.MINOR).value,
            first_evaluation_id=result.id,
            last_evaluation_id=result.id,
            last_value=result.value,
            threshold=result.threshold,
            comparator=result.comparator.value,
        )
    elif decision is Decision.OCCURRENCE and nc is not None:
        nc.occurrences += 1
        nc.condition_cleared = False
        nc.last_evaluation_id = result.id
        nc.last_value = result.value
        nc.updated_at = now
    elif decision is Decision.CLEAR and nc is not None:
        nc.condition_cleared = True
        nc.last_evaluation_id = result.id
        nc.updated_at = now
    change: NonconformityChanged | None = None
    if decision is not Decision.NONE and nc is not None:
        session.add(nc)
        change = NonconformityChanged(
            nonconformity_id=nc.id,
            fingerprint=nc.fingerprint,
            system_id=nc.system_id,
            objective_id=nc.objective_id,
            objective_version=nc.objective_version,
            severity=Severity(nc.severity),
            status=nc.status,
            change=_CHANGE[decision],
            occurrences=nc.occurrences,
            evaluation_id=result.id,
            occurred_at=now,
        )
        enqueue(session, service="alerts", topic=topic, key=nc.id.encode(), value=encode(change))
    session.commit()
    return change
