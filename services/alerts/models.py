"""Tables the alerts service owns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.contracts import IDENTIFIER_MAX_LENGTH

__all__ = [
    "AlertState",
    "CorrectiveAction",
    "Inhibition",
    "LogEntry",
    "LogHead",
    "Nonconformity",
    "Notification",
    "NotifyCursor",
    "Occurrence",
    "ProcessedEvaluation",
    "ReferenceCounter",
    "SeenObjective",
    "Silence",
    "WindowVerdict",
]


def _now() -> datetime:
    return datetime.now(UTC)


class Nonconformity(SQLModel, table=True):
    __tablename__ = "alerts_nonconformity"

    id: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(index=True, max_length=64)
    system_id: str = Field(index=True, max_length=IDENTIFIER_MAX_LENGTH)
    objective_id: str = Field(max_length=IDENTIFIER_MAX_LENGTH)
    objective_version: int
    metric: str
    severity: str
    status: str = "raised"
    open: bool = True
    condition_cleared: bool = False
    occurrences: int = 1
    first_evaluation_id: str
    last_evaluation_id: str
    last_value: float | None = None
    threshold: float
    comparator: str
    raised_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    # clause 10.2 record (revision 0002)
    reference: str | None = Field(default=None, index=True, max_length=32)
    source: str = "monitoring"
    title: str = ""
    description: str = ""
    classification: str = "minor"
    owner: str | None = None
    due_at: datetime | None = None
    created_by: str = "alerts"
    recurrence_of: str | None = Field(default=None, max_length=64)
    triage_decision: str | None = None
    rejection_reason: str | None = None
    duplicate_of: str | None = None
    containment: str | None = None
    consequences: str | None = None
    root_cause_method: str | None = None
    root_cause: str | None = None
    contributing_causes: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    review_method: str | None = None
    review_criteria: str | None = None
    review_windows: int | None = None
    reviewer: str | None = None
    review_result: str | None = None
    review_evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    closed_at: datetime | None = None
    action_plan: int = 1
    """The current action plan: 1, then one more after each review found it not effective
    (revision 0003)."""


class CorrectiveAction(SQLModel, table=True):
    __tablename__ = "alerts_corrective_action"

    id: str = Field(primary_key=True, max_length=64)
    nonconformity_id: str = Field(index=True, max_length=64)
    description: str
    type: str = "corrective"
    owner: str
    due_at: datetime
    status: str = "planned"
    evidence_links: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_by: str
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    reminded_at: datetime | None = None
    action_plan: int = 1
    """The record's action plan this action was created in (revision 0003)."""


class Occurrence(SQLModel, table=True):
    """The evidence behind a record: one breaching window's evaluation."""

    __tablename__ = "alerts_occurrence"

    id: int | None = Field(default=None, primary_key=True)
    nonconformity_id: str = Field(index=True, max_length=64)
    evaluation_id: str = Field(max_length=255)
    objective_version: int
    window_start: datetime
    window_end: datetime
    revision: int = 0
    value: float | None = None
    withdrawn: bool = False
    recorded_at: datetime = Field(default_factory=_now)


class WindowVerdict(SQLModel, table=True):
    """The latest applied revision of one fingerprint's window, so revisions update it."""

    __tablename__ = "alerts_window_verdict"

    fingerprint: str = Field(primary_key=True, max_length=64)
    window_start: datetime = Field(primary_key=True)
    evaluation_id: str = Field(max_length=255)
    revision: int
    status: str
    # what the evidence charts draw (revision 0004; None on verdicts stored before it)
    system_id: str | None = Field(default=None, index=True, max_length=IDENTIFIER_MAX_LENGTH)
    objective_id: str | None = Field(default=None, max_length=IDENTIFIER_MAX_LENGTH)
    objective_version: int | None = None
    window_end: datetime | None = None
    value: float | None = None
    threshold: float | None = None


class Inhibition(SQLModel, table=True):
    """A system window whose performance raises are inhibited (no data or broken inputs)."""

    __tablename__ = "alerts_inhibition"

    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    window_start: datetime = Field(primary_key=True)
    evaluation_id: str = Field(max_length=255)
    reason: str


class Silence(SQLModel, table=True):
    __tablename__ = "alerts_silence"

    id: str = Field(primary_key=True, max_length=64)
    matchers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    author: str
    reason: str
    starts_at: datetime
    expires_at: datetime
    expired_by: str | None = None
    created_at: datetime = Field(default_factory=_now)


class ReferenceCounter(SQLModel, table=True):
    """The last reference number given per year (NC-2026-0001, NC-2026-0002, ...)."""

    __tablename__ = "alerts_reference_counter"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last: int = 0


class LogHead(SQLModel, table=True):
    """The chain's last sequence number and hash; locked by every append to serialise them."""

    __tablename__ = "alerts_log_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = 0
    hash: str = Field(max_length=64)


class LogEntry(SQLModel, table=True):
    """The continual improvement log (clause 10.1): append-only, hash-chained."""

    __tablename__ = "alerts_log"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime
    actor: str
    kind: str = Field(index=True, max_length=64)
    subject: str = Field(index=True, max_length=255)
    before: Any = Field(default=None, sa_column=Column(JSON))
    after: Any = Field(default=None, sa_column=Column(JSON))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class SeenObjective(SQLModel, table=True):
    """Objective versions already logged from the registry topic (it is replayed on start)."""

    __tablename__ = "alerts_seen_objective"

    system_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    objective_id: str = Field(primary_key=True, max_length=IDENTIFIER_MAX_LENGTH)
    version: int


class Notification(SQLModel, table=True):
    """One webhook delivery to one receiver; ``dead`` is the dead-letter record after the last
    failed attempt (nothing is deleted)."""

    __tablename__ = "alerts_notification"

    id: int | None = Field(default=None, primary_key=True)
    receiver: str
    url: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="pending", index=True, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=_now)
    last_error: str | None = None
    log_seq: int | None = None
    created_at: datetime = Field(default_factory=_now)
    delivered_at: datetime | None = None


class NotifyCursor(SQLModel, table=True):
    """A reader's position in the improvement log: the last entry it handled. Row 1: the
    notifier (entries turned into notifications); row 2: the log publisher (entries sent to
    the nonconformities topic)."""

    __tablename__ = "alerts_notify_cursor"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = 0


class AlertState(SQLModel, table=True):
    __tablename__ = "alerts_state"

    fingerprint: str = Field(primary_key=True, max_length=64)
    consecutive_breaches: int = 0
    consecutive_passes: int = 0


class ProcessedEvaluation(SQLModel, table=True):
    """Evaluations already applied, so a redelivered one changes nothing."""

    __tablename__ = "alerts_processed_evaluation"

    evaluation_id: str = Field(primary_key=True, max_length=255)
    processed_at: datetime = Field(default_factory=_now)
