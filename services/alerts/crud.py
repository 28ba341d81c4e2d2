"""Writes to nonconformity records, their actions, silences and the improvement log.

Every function takes the caller's session and leaves the commit to it, so a change, its log
entry and its outbox record land in one transaction. ``actor`` is the token's subject (the
service's own name for decisions the consumer takes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlmodel import Session, col, func, select

from shared.contracts import (
    NonconformityChange,
    NonconformityChanged,
    Severity,
    SystemSnapshot,
    encode,
)
from shared.outbox import enqueue

from .errors import NotFound
from .models import (
    CorrectiveAction,
    LogEntry,
    LogHead,
    Nonconformity,
    ReferenceCounter,
    SeenObjective,
    Silence,
)
from .semantics import (
    GENESIS,
    SILENCE_MATCHERS,
    RecordFacts,
    State,
    TransitionError,
    canonical_entry,
    chain_hash,
    check_transition,
)

__all__ = [
    "ACTION_STATES",
    "DEFAULT_DUE_DAYS",
    "LogVerification",
    "NotFound",
    "add_action",
    "append_log",
    "create_nonconformity",
    "create_silence",
    "expire_silence",
    "lock_log_head",
    "log_objective_changes",
    "log_row",
    "next_reference",
    "nonconformity_filters",
    "publish",
    "reclassify",
    "record_facts",
    "revise_analysis",
    "snapshot",
    "start_watching",
    "transition",
    "update_action",
    "verify_log",
]

DEFAULT_DUE_DAYS = {"major": 30, "minor": 60, "observation": 90}
"""Days from raising to the due date of a record, by classification (settings override)."""

ACTION_STATUSES = ("planned", "in_progress", "implemented", "cancelled")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _json(value: Any) -> Any:
    """The JSON form of a before/after value, as it reads back from the database."""
    return orjson.loads(orjson.dumps(value)) if value is not None else None


def _at_text(at: datetime) -> str:
    return _utc(at).replace(tzinfo=None).isoformat(timespec="microseconds")


# --- the continual improvement log ----------------------------------------------------------


def lock_log_head(*, session: Session) -> LogHead:
    """The chain's head row, locked (SELECT ... FOR UPDATE on PostgreSQL) until the commit."""
    return session.get(LogHead, 1, with_for_update=True) or LogHead(id=1, seq=0, hash=GENESIS)


def append_log(
    *,
    session: Session,
    actor: str,
    kind: str,
    subject: str,
    before: Any,
    after: Any,
    head: LogHead | None = None,
) -> LogEntry:
    """Append one hash-chained entry. The head row is locked, so concurrent writers append one
    after the other, never fork the chain; pass ``head`` when this transaction locked it."""
    if head is None:
        head = lock_log_head(session=session)
    entry = LogEntry(
        **log_row(
            seq=head.seq + 1,
            prev_hash=head.hash,
            actor=actor,
            kind=kind,
            subject=subject,
            before=before,
            after=after,
        )
    )
    head.seq, head.hash = entry.seq, entry.hash
    session.add(head)
    session.add(entry)
    return entry


def _add_logged(
    session: Session, row: object, actor: str, kind: str, subject: str, before: Any, after: Any
) -> None:
    """Add ``row`` and append its audit log entry (``append_log``) in the same transaction."""
    session.add(row)
    append_log(session=session, actor=actor, kind=kind, subject=subject, before=before, after=after)


def log_row(
    *, seq: int, prev_hash: str, actor: str, kind: str, subject: str, before: Any, after: Any
) -> dict[str, Any]:
    """The ``alerts_log`` row of the entry after ``prev_hash``, its hash computed (``at`` is
    now); the caller writes it and moves the head to it."""
    at = datetime.now(UTC)
    before, after = _json(before), _json(after)
    canonical = canonical_entry(
        seq=seq,
        at=_at_text(at),
        actor=actor,
        kind=kind,
        subject=subject,
        before=before,
        after=after,
    )
    return {
        "seq": seq,
        "at": at,
        "actor": actor,
        "kind": kind,
        "subject": subject,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
        "hash": chain_hash(prev_hash, canonical),
    }


def _canonical(entry: LogEntry) -> bytes:
    return canonical_entry(
        seq=entry.seq,
        at=_at_text(entry.at),
        actor=entry.actor,
        kind=entry.kind,
        subject=entry.subject,
        before=entry.before,
        after=entry.after,
    )


@dataclass(frozen=True, slots=True)
class LogVerification:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None


def verify_log(*, session: Session, page: int = 5000) -> LogVerification:
    """Recompute the chain from the genesis; report the first entry that does not fit."""
    previous, expected, checked = GENESIS, 1, 0
    while True:
        rows = session.exec(
            select(LogEntry)
            .where(col(LogEntry.seq) >= expected)
            .order_by(col(LogEntry.seq))
            .limit(page)
        ).all()
        for entry in rows:
            if entry.seq != expected:
                return LogVerification(False, checked, expected, f"entry {expected} is missing")
            if entry.prev_hash != previous:
                return LogVerification(
                    False, checked, entry.seq, "its previous hash does not match the entry before"
                )
            if chain_hash(previous, _canonical(entry)) != entry.hash:
                return LogVerification(
                    False, checked, entry.seq, "its content does not match its hash"
                )
            previous, expected, checked = entry.hash, expected + 1, checked + 1
        if len(rows) < page:
            break
    head = session.get(LogHead, 1)
    if head is not None and head.seq != checked:
        return LogVerification(
            False, checked, checked + 1, f"the head says {head.seq} entries, {checked} found"
        )
    return LogVerification(True, checked)


# --- records --------------------------------------------------------------------------------


def next_reference(*, session: Session, year: int) -> str:
    counter = session.get(ReferenceCounter, year, with_for_update=True)
    if counter is None:
        counter = ReferenceCounter(year=year, last=0)
    counter.last += 1
    session.add(counter)
    return f"NC-{year}-{counter.last:04d}"


def snapshot(nc: Nonconformity) -> dict[str, Any]:
    """What the log keeps of a record before and after a change."""
    return {
        "reference": nc.reference,
        "status": nc.status,
        "classification": nc.classification,
        "occurrences": nc.occurrences,
        "condition_cleared": nc.condition_cleared,
        "owner": nc.owner,
        "open": nc.open,
    }


def publish(
    *,
    session: Session,
    nc: Nonconformity,
    change: NonconformityChange,
    topic: str,
    evaluation_id: str | None = None,
) -> NonconformityChanged:
    """Put the record's NonconformityChanged in the outbox (sent after the commit)."""
    message = NonconformityChanged(
        nonconformity_id=nc.id,
        fingerprint=nc.fingerprint,
        system_id=nc.system_id,
        objective_id=nc.objective_id,
        objective_version=nc.objective_version,
        severity=Severity(nc.classification),
        status=nc.status,
        change=change,
        occurrences=nc.occurrences,
        evaluation_id=evaluation_id,
        occurred_at=datetime.now(UTC),
    )
    enqueue(session, service="alerts", topic=topic, key=nc.id.encode(), value=encode(message))
    return message


def find(*, session: Session, nc_id: str) -> Nonconformity:
    """A record by id or by reference number."""
    nc = session.get(Nonconformity, nc_id)
    if nc is None:
        nc = session.exec(select(Nonconformity).where(Nonconformity.reference == nc_id)).first()
    if nc is None:
        raise NotFound(f"no nonconformity {nc_id!r}")
    return nc


def create_nonconformity(
    *,
    session: Session,
    data: dict[str, Any],
    actor: str,
    topic: str,
    due_days: dict[str, int],
) -> Nonconformity:
    """A record raised by hand (source audit, incident or complaint)."""
    now = datetime.now(UTC)
    nc_id = uuid.uuid4().hex
    classification = str(data["classification"])
    nc = Nonconformity(
        id=nc_id,
        fingerprint=f"manual-{nc_id}",
        system_id=data["system_id"],
        objective_id=data.get("objective_id") or "manual",
        objective_version=0,
        metric="-",
        severity=classification,
        first_evaluation_id="",
        last_evaluation_id="",
        threshold=0.0,
        comparator="",
        reference=next_reference(session=session, year=now.year),
        source=data["source"],
        title=data["title"],
        description=data.get("description", ""),
        classification=classification,
        owner=data.get("owner"),
        due_at=data.get("due_at") or now + timedelta(days=due_days[classification]),
        created_by=actor,
        raised_at=now,
        updated_at=now,
    )
    _add_logged(
        session,
        nc,
        actor,
        "manual_record",
        nc.id,
        None,
        {**snapshot(nc), "source": nc.source, "title": nc.title},
    )
    publish(session=session, nc=nc, change=NonconformityChange.RAISED, topic=topic)
    return nc


def actions_of(*, session: Session, nc_id: str) -> Sequence[CorrectiveAction]:
    return session.exec(
        select(CorrectiveAction)
        .where(CorrectiveAction.nonconformity_id == nc_id)
        .order_by(col(CorrectiveAction.created_at))
    ).all()


_TRANSITION_FIELDS = (
    "owner",
    "containment",
    "consequences",
    "root_cause_method",
    "root_cause",
    "contributing_causes",
    "review_method",
    "review_criteria",
    "review_windows",
    "reviewer",
    "review_result",
)


def record_facts(*, session: Session, nc: Nonconformity, data: dict[str, Any]) -> RecordFacts:
    """What the lifecycle guards see: the record, its actions and the fields ``data`` brings
    with the step (the web UI asks with the fields its forms will send, to say why a step is
    not possible yet)."""
    fields = {k: data[k] for k in _TRANSITION_FIELDS if data.get(k) is not None}
    merged = {k: fields.get(k, getattr(nc, k)) for k in _TRANSITION_FIELDS}
    actions = actions_of(session=session, nc_id=nc.id)
    live = [a for a in actions if a.status != "cancelled"]
    plan = [a for a in live if a.action_plan == nc.action_plan]  # earlier plans do not count
    return RecordFacts(
        state=State(nc.status),
        containment=bool(merged["containment"]),
        root_cause=bool(merged["root_cause_method"] and merged["root_cause"]),
        actions_open=sum(1 for a in plan if a.status != "implemented"),
        actions_live=len(plan),
        action_owners=frozenset(a.owner for a in live),
        review_result=merged["review_result"],
        reviewer=merged["reviewer"],
        evidence_breached=bool(nc.review_evidence.get("breached")),
        action_plan=nc.action_plan,
    )


def transition(
    *,
    session: Session,
    nc: Nonconformity,
    target: State,
    data: dict[str, Any],
    actor: str,
    topic: str,
) -> Nonconformity:
    """Move a record one step; the fields the step needs come with it. TransitionError when
    the step is illegal or its guard fails (nothing is written then)."""
    before = snapshot(nc)
    fields = {k: data[k] for k in _TRANSITION_FIELDS if data.get(k) is not None}
    reason = str(data.get("reason") or "")
    facts = record_facts(session=session, nc=nc, data=data)
    if target is State.REJECTED:
        if data.get("rejection") not in ("false_positive", "duplicate") or not reason.strip():
            raise TransitionError(
                "rejecting needs rejection (false_positive or duplicate) and a reason"
            )
        if data["rejection"] == "duplicate" and not data.get("duplicate_of"):
            raise TransitionError("rejecting as a duplicate needs duplicate_of")
    check_transition(facts, target, reason=reason)
    for name, value in fields.items():
        setattr(nc, name, value)
    now = datetime.now(UTC)
    if target is State.TRIAGED:
        nc.triage_decision = "accepted"
    elif target is State.REJECTED:
        nc.triage_decision = f"rejected_{data['rejection']}"
        nc.rejection_reason = reason
        nc.duplicate_of = data.get("duplicate_of")
        nc.open = False
        nc.closed_at = now
    elif target is State.CLOSED:
        nc.open = False
        nc.closed_at = now
    elif target is State.CAUSE_ANALYSED and nc.status == State.EFFECTIVENESS_REVIEW:
        # not effective: the review is kept in the log, the record starts a new analysis and
        # a new action plan (the old plan's actions stay, but no longer satisfy the guards)
        nc.review_result = None
        nc.review_evidence = {}
        nc.action_plan += 1
    nc.status = target.value
    nc.updated_at = now
    _add_logged(
        session,
        nc,
        actor,
        "transition",
        nc.id,
        before,
        {**snapshot(nc), **fields, "action_plan": nc.action_plan, "reason": reason or None},
    )
    publish(session=session, nc=nc, change=NonconformityChange.STATUS_CHANGED, topic=topic)
    return nc


def reclassify(
    *, session: Session, nc: Nonconformity, classification: str, reason: str, actor: str, topic: str
) -> Nonconformity:
    before = snapshot(nc)
    nc.classification = classification
    nc.updated_at = datetime.now(UTC)
    _add_logged(
        session, nc, actor, "classification", nc.id, before, {**snapshot(nc), "reason": reason}
    )
    publish(session=session, nc=nc, change=NonconformityChange.STATUS_CHANGED, topic=topic)
    return nc


ACTION_STATES = frozenset({State.CAUSE_ANALYSED, State.ACTION_PLANNED})
"""The states in which corrective actions are planned (and the analysis may be revised)."""

ROOT_CAUSE_METHODS = ("five_whys", "fishbone", "other")


def _analysis_view(nc: Nonconformity) -> dict[str, Any]:
    return {
        "root_cause_method": nc.root_cause_method,
        "root_cause": nc.root_cause,
        "contributing_causes": list(nc.contributing_causes or []),
    }


def revise_analysis(
    *, session: Session, nc: Nonconformity, data: dict[str, Any], actor: str
) -> Nonconformity:
    """Refine the root cause analysis while the actions are being planned (states
    cause_analysed and action_planned); the log keeps the analysis before and after."""
    if State(nc.status) not in ACTION_STATES:
        raise TransitionError(
            f"the record is {nc.status}: the root cause analysis is revised while actions are "
            "planned (state cause_analysed or action_planned)"
        )
    method, text = data.get("root_cause_method"), str(data.get("root_cause") or "").strip()
    if method not in ROOT_CAUSE_METHODS:
        raise ValueError(f"root_cause_method: one of {', '.join(ROOT_CAUSE_METHODS)}")
    if not text:
        raise ValueError("root_cause: the root cause cannot be empty")
    before = _analysis_view(nc)
    nc.root_cause_method, nc.root_cause = method, text
    nc.contributing_causes = [str(c) for c in data.get("contributing_causes") or [] if str(c)]
    nc.updated_at = datetime.now(UTC)
    _add_logged(session, nc, actor, "analysis_revised", nc.id, before, _analysis_view(nc))
    return nc


def add_action(
    *, session: Session, nc: Nonconformity, data: dict[str, Any], actor: str
) -> CorrectiveAction:
    if State(nc.status) not in ACTION_STATES:
        raise TransitionError(
            f"the record is {nc.status}: corrective actions are planned after the root cause "
            "analysis (state cause_analysed or action_planned)"
        )
    action = CorrectiveAction(
        id=uuid.uuid4().hex,
        nonconformity_id=nc.id,
        description=data["description"],
        type=data.get("type", "corrective"),
        owner=data["owner"],
        due_at=data["due_at"],
        evidence_links=list(data.get("evidence_links") or []),
        created_by=actor,
        action_plan=nc.action_plan,
    )
    _add_logged(session, action, actor, "action_planned", nc.id, None, _action_view(action))
    return action


def _action_view(action: CorrectiveAction) -> dict[str, Any]:
    return {
        "action_id": action.id,
        "description": action.description,
        "type": action.type,
        "owner": action.owner,
        "due_at": _utc(action.due_at).isoformat(),
        "status": action.status,
        "evidence_links": list(action.evidence_links),
        "action_plan": action.action_plan,
    }


def update_action(
    *,
    session: Session,
    action: CorrectiveAction,
    data: dict[str, Any],
    actor: str,
    effectiveness_windows: int = 3,
) -> CorrectiveAction:
    """Change an action; when it makes every live action of a monitoring record implemented,
    the consumer starts watching the objective's next evaluations for the review's evidence."""
    if action.status in ("implemented", "cancelled"):
        raise TransitionError(f"the action is {action.status}: it can no longer change")
    before = _action_view(action)
    for name in ("description", "owner", "due_at", "status"):
        if data.get(name) is not None:
            setattr(action, name, data[name])
    if data.get("evidence_links"):
        action.evidence_links = [*action.evidence_links, *data["evidence_links"]]
    if action.status == "implemented" and not action.evidence_links:
        raise TransitionError("an implemented action needs at least one evidence link")
    action.updated_at = datetime.now(UTC)
    _add_logged(
        session,
        action,
        actor,
        "action_updated",
        action.nonconformity_id,
        before,
        _action_view(action),
    )
    if action.status == "implemented":
        session.flush()
        nc = session.get(Nonconformity, action.nonconformity_id)
        plan = [
            a
            for a in actions_of(session=session, nc_id=action.nonconformity_id)
            if a.status != "cancelled" and nc is not None and a.action_plan == nc.action_plan
        ]
        if (
            nc is not None
            and nc.source == "monitoring"
            and all(a.status == "implemented" for a in plan)
        ):
            start_watching(session=session, nc=nc, windows=effectiveness_windows, actor=actor)
    return action


def start_watching(*, session: Session, nc: Nonconformity, windows: int, actor: str) -> None:
    """Evidence for the effectiveness review: the objective's evaluations of windows starting
    from now, until ``windows`` consecutive ones are met or one breaches again."""
    nc.review_evidence = {
        "status": "watching",
        "since": datetime.now(UTC).isoformat(),
        "needed": windows,
        "consecutive_met": 0,
        "breached": False,
        "windows": [],
    }
    _add_logged(session, nc, actor, "effectiveness_watch", nc.id, None, nc.review_evidence)


# --- silences -------------------------------------------------------------------------------


def create_silence(*, session: Session, data: dict[str, Any], actor: str) -> Silence:
    matchers = {k: str(v) for k, v in data["matchers"].items()}
    unknown = sorted(set(matchers) - set(SILENCE_MATCHERS))
    if unknown or not matchers:
        raise ValueError(
            f"matchers: use one or more of {', '.join(SILENCE_MATCHERS)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    starts_at = data.get("starts_at") or datetime.now(UTC)
    if _utc(data["expires_at"]) <= _utc(starts_at):
        raise ValueError("expires_at: must be after starts_at")
    silence = Silence(
        id=uuid.uuid4().hex,
        matchers=matchers,
        author=actor,
        reason=data["reason"],
        starts_at=starts_at,
        expires_at=data["expires_at"],
    )
    _add_logged(
        session,
        silence,
        actor,
        "silence_created",
        f"silence:{silence.id}",
        None,
        _silence_view(silence),
    )
    return silence


def _silence_view(silence: Silence) -> dict[str, Any]:
    return {
        "matchers": silence.matchers,
        "reason": silence.reason,
        "starts_at": _utc(silence.starts_at).isoformat(),
        "expires_at": _utc(silence.expires_at).isoformat(),
    }


def expire_silence(*, session: Session, silence: Silence, actor: str) -> Silence:
    now = datetime.now(UTC)
    if _utc(silence.expires_at) <= now:
        raise TransitionError("the silence has already expired")
    before = _silence_view(silence)
    silence.expires_at = now
    silence.expired_by = actor
    _add_logged(
        session,
        silence,
        actor,
        "silence_expired",
        f"silence:{silence.id}",
        before,
        _silence_view(silence),
    )
    return silence


def active_silences(*, session: Session, at: datetime) -> Sequence[Silence]:
    return session.exec(
        select(Silence).where(col(Silence.starts_at) <= at, col(Silence.expires_at) > at)
    ).all()


def nonconformity_filters(
    *,
    system_id: str | None = None,
    state: str | None = None,
    classification: str | None = None,
    owner: str | None = None,
    source: str | None = None,
    open_only: bool = False,
    overdue: bool = False,
    min_age_days: float | None = None,
    now: datetime | None = None,
) -> list[Any]:
    """The WHERE conditions of a filtered list of records (the API's list and the web queue):
    ``overdue`` = open and past ``due_at``; ``min_age_days`` = raised at least that long ago."""
    now = now or datetime.now(UTC)
    conditions: list[Any] = [
        column == value
        for column, value in (
            (Nonconformity.system_id, system_id),
            (Nonconformity.status, state),
            (Nonconformity.classification, classification),
            (Nonconformity.owner, owner),
            (Nonconformity.source, source),
        )
        if value is not None
    ]
    if open_only or overdue:
        conditions.append(col(Nonconformity.open).is_(True))
    if overdue:
        conditions.append(col(Nonconformity.due_at) < now)
    if min_age_days is not None:
        conditions.append(col(Nonconformity.raised_at) <= now - timedelta(days=min_age_days))
    return conditions


def count(session: Session, stmt: Any) -> int:
    return int(session.exec(select(func.count()).select_from(stmt.subquery())).one())


def log_objective_changes(*, session: Session, system: SystemSnapshot) -> int:
    """Log each objective version of a registry snapshot not logged yet (the registry topic is
    read from its beginning at every start, so versions already seen are skipped)."""
    logged = 0
    for objective in system.objectives:
        seen = session.get(SeenObjective, (system.system_id, objective.id))
        if seen is not None and seen.version >= objective.version:
            continue
        append_log(
            session=session,
            actor=objective.changed_by,
            kind="objective_changed",
            subject=f"objective:{system.system_id}/{objective.id}",
            before={"version": seen.version} if seen is not None else None,
            after={
                "version": objective.version,
                "status": objective.status.value,
                "metric": objective.metric,
                "comparator": objective.comparator.value,
                "threshold": objective.threshold,
                "severity": objective.severity.value,
                "changed_at": _utc(objective.changed_at).isoformat(),
                "change_reason": objective.change_reason,
                "owner": objective.owner,
                "rationale": objective.rationale,
                "references": list(objective.references),
                "window_seconds": objective.window_seconds,
            },
        )
        seen = seen or SeenObjective(
            system_id=system.system_id, objective_id=objective.id, version=0
        )
        seen.version = objective.version
        session.add(seen)
        logged += 1
    return logged
