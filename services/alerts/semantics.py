"""Alert semantics (pure): fingerprints, pending and hysteresis.

A breach raises a nonconformity only after ``pending_windows`` consecutive breaching windows;
an open nonconformity that breaches again gets an occurrence, never a twin. The condition is
cleared after ``clearing_windows`` consecutive passing windows; clearing is evidence, it never
closes the nonconformity (closing needs an effectiveness review).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

import orjson

from shared.contracts import EvaluationStatus

from .errors import TransitionError

__all__ = [
    "GENESIS",
    "ORDER",
    "TERMINAL",
    "TRANSITIONS",
    "AlertCounters",
    "Decision",
    "RecordFacts",
    "RevisionEffect",
    "State",
    "TransitionError",
    "canonical_entry",
    "chain_hash",
    "check_transition",
    "decide",
    "fingerprint",
    "inhibits",
    "is_performance_metric",
    "revision_effect",
    "silence_matches",
]


def fingerprint(system_id: str, objective_id: str, parameters: dict[str, str]) -> str:
    """One open nonconformity per (system, objective, metric parameters incl. segment)."""
    canonical = "|".join(
        [system_id, objective_id, *(f"{k}={parameters[k]}" for k in sorted(parameters))]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Decision(StrEnum):
    NONE = "none"
    RAISE = "raise"
    OCCURRENCE = "occurrence"
    CLEAR = "clear"


@dataclass(slots=True)
class AlertCounters:
    consecutive_breaches: int = 0
    consecutive_passes: int = 0


def decide(
    counters: AlertCounters,
    status: EvaluationStatus,
    *,
    open_nonconformity: bool,
    condition_cleared: bool,
    pending_windows: int,
    clearing_windows: int,
) -> Decision:
    """Update the counters for one evaluation and say what happens to the nonconformity."""
    if status is EvaluationStatus.BREACH:
        counters.consecutive_breaches += 1
        counters.consecutive_passes = 0
        if counters.consecutive_breaches < pending_windows:
            return Decision.NONE
        return Decision.OCCURRENCE if open_nonconformity else Decision.RAISE
    if status is EvaluationStatus.PASS:
        counters.consecutive_passes += 1
        counters.consecutive_breaches = 0
        if (
            open_nonconformity
            and not condition_cleared
            and counters.consecutive_passes >= clearing_windows
        ):
            return Decision.CLEAR
    return Decision.NONE


# --- inhibition -----------------------------------------------------------------------------

DATA_QUALITY_METRICS = frozenset(
    {"missing_rate", "out_of_range_rate", "unseen_category_rate", "schema_violation_rate"}
)
PERFORMANCE_METRICS = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "brier",
        "calibration_error",
        "mae",
        "rmse",
        "mape",
        "r2",
    }
)


def is_performance_metric(metric: str) -> bool:
    return metric in PERFORMANCE_METRICS or metric.startswith("estimated_")


def inhibits(status: EvaluationStatus, metric: str) -> bool:
    """An evaluation that makes the same window's performance raises of its system untrustworthy:
    no data to judge on, or broken inputs (a data-quality breach)."""
    return status is EvaluationStatus.INSUFFICIENT_DATA or (
        status is EvaluationStatus.BREACH and metric in DATA_QUALITY_METRICS
    )


# --- revisions ------------------------------------------------------------------------------


class RevisionEffect(StrEnum):
    """What a revision of an already judged window does to that window's verdict."""

    IGNORE = "ignore"
    """Not newer than what was applied (a replay or an out-of-order older revision)."""
    SAME = "same"
    """Newer, but the verdict did not change breach <-> not breach: only the evidence updates."""
    NOW_BREACH = "now_breach"
    """The window was not breaching and now is: it can raise or add an occurrence."""
    NO_LONGER_BREACH = "no_longer_breach"
    """The window breached and no longer does: its occurrence is withdrawn."""


def revision_effect(
    *,
    applied_revision: int,
    applied_status: EvaluationStatus,
    revision: int,
    status: EvaluationStatus,
) -> RevisionEffect:
    if revision <= applied_revision:
        return RevisionEffect.IGNORE
    was = applied_status is EvaluationStatus.BREACH
    now = status is EvaluationStatus.BREACH
    if was == now:
        return RevisionEffect.SAME
    return RevisionEffect.NOW_BREACH if now else RevisionEffect.NO_LONGER_BREACH


# --- silences -------------------------------------------------------------------------------

SILENCE_MATCHERS = ("system_id", "objective_id", "metric", "severity")


def silence_matches(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Every matcher must equal the label (an empty matcher set matches nothing)."""
    if not matchers:
        return False
    return all(labels.get(name) == value for name, value in matchers.items())


# --- lifecycle ------------------------------------------------------------------------------


class State(StrEnum):
    RAISED = "raised"
    TRIAGED = "triaged"
    REJECTED = "rejected"
    CONTAINED = "contained"
    CAUSE_ANALYSED = "cause_analysed"
    ACTION_PLANNED = "action_planned"
    ACTION_IMPLEMENTED = "action_implemented"
    EFFECTIVENESS_REVIEW = "effectiveness_review"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"
    """Its only breaching window was revised to a pass before anyone triaged it."""


TERMINAL = frozenset({State.REJECTED, State.CLOSED, State.WITHDRAWN})

ORDER = (
    State.RAISED,
    State.TRIAGED,
    State.CONTAINED,
    State.CAUSE_ANALYSED,
    State.ACTION_PLANNED,
    State.ACTION_IMPLEMENTED,
    State.EFFECTIVENESS_REVIEW,
    State.CLOSED,
)

TRANSITIONS: dict[State, frozenset[State]] = {
    State.RAISED: frozenset({State.TRIAGED, State.REJECTED}),
    State.TRIAGED: frozenset({State.CONTAINED}),
    State.CONTAINED: frozenset({State.CAUSE_ANALYSED}),
    State.CAUSE_ANALYSED: frozenset({State.ACTION_PLANNED}),
    State.ACTION_PLANNED: frozenset({State.ACTION_IMPLEMENTED}),
    State.ACTION_IMPLEMENTED: frozenset({State.EFFECTIVENESS_REVIEW}),
    State.EFFECTIVENESS_REVIEW: frozenset({State.CLOSED, State.CAUSE_ANALYSED}),
}


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the guards look at, read from the record before the transition."""

    state: State
    containment: bool = False
    root_cause: bool = False
    actions_open: int = 0
    """Actions planned or in progress (not implemented, not cancelled)."""
    actions_live: int = 0
    """Actions not cancelled."""
    action_owners: frozenset[str] = frozenset()
    review_result: str | None = None
    reviewer: str | None = None
    evidence_breached: bool = False
    """The automatic effectiveness evidence saw the objective breached again."""
    action_plan: int = 1
    """The current action plan; above 1 after a review found the previous one not effective
    (``actions_open`` and ``actions_live`` then count the current plan's actions only)."""


def check_transition(facts: RecordFacts, target: State, *, reason: str = "") -> None:
    """Raise TransitionError unless ``facts.state -> target`` is legal and its guard holds."""
    current = facts.state
    if current in TERMINAL:
        raise TransitionError(f"the nonconformity is {current.value}: no further transition")
    allowed = TRANSITIONS[current]
    if target not in allowed:
        if target in ORDER and current in ORDER and ORDER.index(target) > ORDER.index(current):
            missing = ORDER[ORDER.index(current) + 1]
            raise TransitionError(
                f"cannot go from {current.value} to {target.value}: "
                f"the record must be {missing.value} first"
            )
        raise TransitionError(
            f"cannot go from {current.value} to {target.value}; allowed next: "
            + ", ".join(sorted(s.value for s in allowed))
        )
    if target is State.CONTAINED and not facts.containment:
        raise TransitionError("missing step: containment (what was done to contain it)")
    if target is State.CAUSE_ANALYSED and not facts.root_cause:
        raise TransitionError("missing step: root cause analysis (method and text) is required")
    if (
        target in (State.ACTION_PLANNED, State.ACTION_IMPLEMENTED)
        and facts.root_cause
        and facts.actions_live == 0
        and facts.action_plan > 1
    ):
        raise TransitionError(
            f"missing step: a new corrective action for action plan {facts.action_plan}: the "
            "effectiveness review found the previous actions not effective, so at least one "
            "action created after the record went back to analysis is required"
        )
    if target is State.ACTION_PLANNED and (not facts.root_cause or facts.actions_live == 0):
        raise TransitionError(
            "missing step: no action plan without a root cause and at least one corrective action"
        )
    if target is State.ACTION_IMPLEMENTED and (facts.actions_live == 0 or facts.actions_open):
        raise TransitionError(
            f"missing step: {facts.actions_open} corrective action(s) not implemented yet"
        )
    if target is State.EFFECTIVENESS_REVIEW:
        if not facts.reviewer:
            raise TransitionError("missing step: an effectiveness review needs a reviewer")
        if facts.reviewer in facts.action_owners:
            raise TransitionError(
                f"the reviewer {facts.reviewer!r} owns a corrective action: "
                "the effectiveness review needs someone else"
            )
    if target is State.CLOSED:
        if facts.review_result != "confirmed":
            raise TransitionError(
                "missing step: no close without an effectiveness review whose result is confirmed"
            )
        if facts.evidence_breached and not reason.strip():
            raise TransitionError(
                "the objective breached again after the actions were implemented: "
                "closing as effective needs a reason"
            )
    if (
        target is State.CAUSE_ANALYSED
        and current is State.EFFECTIVENESS_REVIEW
        and facts.review_result != "not_effective"
    ):
        raise TransitionError(
            "back to analysis only when the effectiveness review result is not_effective"
        )


# --- continual improvement log --------------------------------------------------------------

GENESIS = "0" * 64


def canonical_entry(
    *,
    seq: int,
    at: str,
    actor: str,
    kind: str,
    subject: str,
    before: object,
    after: object,
) -> bytes:
    """The bytes a log entry's hash covers: sorted-key JSON, no whitespace, UTC ISO time."""
    return orjson.dumps(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "kind": kind,
            "subject": subject,
            "before": before,
            "after": after,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(previous: str, canonical: bytes) -> str:
    """SHA-256 over the previous entry's hash (hex) and this entry's canonical bytes."""
    return hashlib.sha256(previous.encode("ascii") + canonical).hexdigest()
