"""The management review report (ISO/IEC 42001 clause 9.3): nonconformity counts and trends,
times to contain and to close, overdue actions, effectiveness results, objective attainment
and objective changes for one period and one AI system (or all).

Everything is computed from rows by pure functions (:func:`management_review`), so the numbers
are testable without a server. The lifecycle facts (a record's state or classification at a
given time, when it was contained or closed, an action's status) come from the continual
improvement log, the tamper-evident record of every decision, not from the rows' current
values. :func:`load_rows` is the one place that reads the database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from shared.contracts import SystemSnapshot

from .models import CorrectiveAction, LogEntry, Nonconformity, WindowVerdict
from .semantics import ORDER, TERMINAL, State, fingerprint

__all__ = [
    "CLASSIFICATIONS",
    "OPEN_STATES",
    "STATES",
    "Period",
    "ReviewRows",
    "Window",
    "bar_chart",
    "buckets",
    "fingerprint_owners",
    "load_rows",
    "management_review",
    "parse_bound",
    "period_from_query",
]

CLASSIFICATIONS = ("major", "minor", "observation")
STATES = (*(s.value for s in ORDER), State.REJECTED.value, State.WITHDRAWN.value)
"""Every lifecycle state, in the order of the lifecycle (then the two side exits)."""
OPEN_STATES = tuple(s for s in STATES if State(s) not in TERMINAL)
RECORD_KINDS = frozenset(
    {
        "raised",
        "manual_record",
        "transition",
        "withdrawn",
        "occurrence",
        "occurrence_withdrawn",
        "cleared",
        "classification",
    }
)
"""Log kinds whose ``after`` is a snapshot of the record (status, classification, ...)."""
ACTION_KINDS = frozenset({"action_planned", "action_updated"})
DEFAULT_DAYS = 90
"""The period when ``from`` is not given: the 90 days before ``to`` (a quarter)."""


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(at: datetime | None) -> str | None:
    return _utc(at).isoformat() if at is not None else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        return None


# --- the period -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC, for one system or (``system_id`` None) all of them."""

    start: datetime
    end: datetime
    system_id: str | None = None

    def __contains__(self, at: datetime) -> bool:
        return self.start <= _utc(at) < self.end

    def covers(self, system_id: str) -> bool:
        return self.system_id is None or self.system_id == system_id


def parse_bound(name: str, text: str, *, end: bool) -> datetime:
    """A period bound from a query string: an ISO date (``to`` = the end of that day, so the
    day is included) or an ISO date-time (naive = UTC). ValueError names the field."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            at = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return at + timedelta(days=1) if end else at
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is not an ISO date (2026-03-31) or date-time (2026-03-31T12:00:00Z)"
        ) from None


def period_from_query(
    system: str | None, start: str | None, end: str | None, *, now: datetime
) -> Period:
    """The period of ``?system=&from=&to=``: ``to`` defaults to now, ``from`` to 90 days
    before ``to``; ``system`` empty or ``all`` means every system."""
    end_at = parse_bound("to", end, end=True) if end else _utc(now)
    start_at = parse_bound("from", start, end=False) if start else end_at - timedelta(DEFAULT_DAYS)
    if start_at >= end_at:
        raise ValueError(f"from: must be before to ({_iso(start_at)} >= {_iso(end_at)})")
    wanted = (system or "").strip()
    return Period(start_at, end_at, None if wanted in ("", "all") else wanted)


def buckets(period: Period) -> tuple[str, list[tuple[datetime, datetime]]]:
    """The trend's time buckets: days up to 31 days, weeks (7 days from the start) up to 26
    weeks, calendar months beyond; the last bucket is cut at the period's end."""
    length = period.end - period.start
    if length <= timedelta(weeks=26):
        unit, step = ("day", timedelta(days=1))
        if length > timedelta(days=31):
            unit, step = ("week", timedelta(weeks=1))
        edges = []
        at = period.start
        while at < period.end:
            edges.append((at, min(at + step, period.end)))
            at += step
        return unit, edges
    edges = []
    at = period.start
    while at < period.end:
        following = (at.replace(day=1) + timedelta(days=32)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        edges.append((at, min(following, period.end)))
        at = following
    return "month", edges


# --- the rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """One judged monitoring window of an objective (its latest applied revision)."""

    system_id: str
    objective_id: str
    window_start: datetime
    status: str
    """pass, breach, insufficient_data or error."""
    evaluation_id: str = ""
    revision: int = 0
    window_end: datetime | None = None
    value: float | None = None
    threshold: float | None = None


@dataclass(slots=True)
class ReviewRows:
    """What the report reads. ``records`` are those open at some time in the period; ``log``
    holds their entries up to the period's end and every ``objective_changed`` entry."""

    records: Sequence[Nonconformity]
    actions: Sequence[CorrectiveAction]
    log: Sequence[LogEntry]
    windows: Sequence[Window]
    objectives: Mapping[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Current objective definitions (from the registry topic) by (system, objective)."""
    unattributed_windows: int = 0
    """Judged windows whose fingerprint matches no known objective (see docs/alerts.md)."""


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def fingerprint_owners(
    *, session: Session, systems: Mapping[str, SystemSnapshot]
) -> dict[str, tuple[str, str]]:
    """Which (system, objective) each alert fingerprint belongs to: the records' fingerprints,
    the held-back raises in the log, and every objective the registry topic currently names
    (fingerprint of its system, id and parameters)."""
    owners: dict[str, tuple[str, str]] = {}
    for print_, system_id, objective_id in session.exec(
        select(Nonconformity.fingerprint, Nonconformity.system_id, Nonconformity.objective_id)
        .where(Nonconformity.source == "monitoring")
        .distinct()
    ).all():
        owners[print_] = (system_id, objective_id)
    for subject, after in session.exec(
        select(LogEntry.subject, LogEntry.after).where(
            col(LogEntry.kind).in_(("raise_inhibited", "raise_silenced"))
        )
    ).all():
        if isinstance(after, dict) and "system_id" in after and "objective_id" in after:
            owners[subject.removeprefix("fingerprint:")] = (
                str(after["system_id"]),
                str(after["objective_id"]),
            )
    for system in systems.values():
        for objective in system.objectives:
            owners[fingerprint(system.system_id, objective.id, objective.parameters)] = (
                system.system_id,
                objective.id,
            )
    return owners


def _objective_definitions(
    systems: Mapping[str, SystemSnapshot], period: Period
) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (system.system_id, objective.id): objective.model_dump(mode="json")
        for system in systems.values()
        if period.covers(system.system_id)
        for objective in system.objectives
    }


def load_rows(
    *, session: Session, period: Period, systems: Mapping[str, SystemSnapshot]
) -> ReviewRows:
    """Read the rows the report needs: records open at some time in the period, their
    actions and log entries (up to the period's end), objective changes, judged windows."""
    stmt = select(Nonconformity).where(
        col(Nonconformity.raised_at) < period.end,
        (col(Nonconformity.closed_at).is_(None)) | (col(Nonconformity.closed_at) >= period.start),
    )
    if period.system_id is not None:
        stmt = stmt.where(Nonconformity.system_id == period.system_id)
    records = list(session.exec(stmt.order_by(col(Nonconformity.raised_at))).all())
    ids = [r.id for r in records]
    actions: list[CorrectiveAction] = []
    log: list[LogEntry] = []
    for chunk in _chunks(ids):
        actions += session.exec(
            select(CorrectiveAction).where(col(CorrectiveAction.nonconformity_id).in_(chunk))
        ).all()
        log += session.exec(
            select(LogEntry).where(col(LogEntry.subject).in_(chunk), col(LogEntry.at) < period.end)
        ).all()
    objective_changes = select(LogEntry).where(LogEntry.kind == "objective_changed")
    if period.system_id is not None:
        objective_changes = objective_changes.where(
            col(LogEntry.subject).startswith(f"objective:{period.system_id}/")
        )
    log += session.exec(objective_changes).all()
    log.sort(key=lambda e: e.seq)
    owners = fingerprint_owners(session=session, systems=systems)
    windows, unattributed = [], 0
    for verdict in session.exec(
        select(WindowVerdict).where(
            col(WindowVerdict.window_start) >= period.start,
            col(WindowVerdict.window_start) < period.end,
        )
    ).all():
        # verdicts stored since revision 0004 name their system and objective themselves
        system_id = getattr(verdict, "system_id", None)
        objective_id = getattr(verdict, "objective_id", None)
        owner = (system_id, objective_id) if system_id and objective_id else None
        owner = owner or owners.get(verdict.fingerprint)
        if owner is None:
            unattributed += 1
            continue
        if period.covers(owner[0]):
            end = getattr(verdict, "window_end", None)
            windows.append(
                Window(
                    system_id=owner[0],
                    objective_id=owner[1],
                    window_start=_utc(verdict.window_start),
                    status=verdict.status,
                    evaluation_id=verdict.evaluation_id,
                    revision=verdict.revision,
                    window_end=_utc(end) if end is not None else None,
                    value=getattr(verdict, "value", None),
                    threshold=getattr(verdict, "threshold", None),
                )
            )
    actions.sort(key=lambda a: (_utc(a.created_at), a.id))
    return ReviewRows(
        records=records,
        actions=actions,
        log=log,
        windows=windows,
        objectives=_objective_definitions(systems, period),
        unattributed_windows=unattributed if period.system_id is None else 0,
    )


# --- reading the log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    at: datetime
    kind: str
    actor: str
    before: dict[str, Any]
    after: dict[str, Any]


def _events(log: Iterable[LogEntry], kinds: frozenset[str]) -> dict[str, list[_Event]]:
    """Log entries of ``kinds`` by subject, in chain order."""
    found: dict[str, list[_Event]] = defaultdict(list)
    for entry in sorted(log, key=lambda e: e.seq):
        if entry.kind in kinds:
            found[entry.subject].append(
                _Event(
                    seq=entry.seq,
                    at=_utc(entry.at),
                    kind=entry.kind,
                    actor=entry.actor,
                    before=entry.before if isinstance(entry.before, dict) else {},
                    after=entry.after if isinstance(entry.after, dict) else {},
                )
            )
    return found


class _History:
    """One record's life as the log tells it."""

    def __init__(self, record: Nonconformity, events: list[_Event]) -> None:
        self.record = record
        self.raised_at = _utc(record.raised_at)
        self.events = events

    def exists_at(self, at: datetime) -> bool:
        return self.raised_at <= at

    def _last(self, at: datetime, key: str) -> Any:
        value = None
        for event in self.events:
            if event.at > at:
                break
            if key in event.after:
                value = event.after[key]
        return value

    def state_at(self, at: datetime) -> str:
        return str(self._last(at, "status") or State.RAISED.value)

    def classification_at(self, at: datetime) -> str:
        return str(self._last(at, "classification") or self.record.classification)

    def open_at(self, at: datetime) -> bool:
        return self.exists_at(at) and State(self.state_at(at)) not in TERMINAL

    def first(self, status: str) -> _Event | None:
        """The first step into ``status`` (a transition or, for withdrawn, the withdrawal)."""
        for event in self.events:
            if (
                event.kind in ("transition", "withdrawn")
                and event.after.get("status") == status
                and event.before.get("status") != status
            ):
                return event
        return None


def _actions_at(
    actions: Sequence[CorrectiveAction], events: Mapping[str, list[_Event]], at: datetime
) -> list[tuple[CorrectiveAction, dict[str, Any]]]:
    """Each action as it stood at ``at`` (the log's view of it), if it existed then."""
    views: dict[str, dict[str, Any]] = {}
    logged: set[str] = set()
    for subject_events in events.values():
        for event in subject_events:
            action_id = event.after.get("action_id")
            if isinstance(action_id, str):
                logged.add(action_id)
                if event.at <= at:
                    views[action_id] = event.after
    found = []
    for action in actions:
        view = views.get(action.id)
        if view is None and action.id not in logged and _utc(action.created_at) <= at:
            view = {  # an action the log never saw (should not happen): the row itself
                "status": action.status,
                "due_at": _iso(action.due_at),
                "owner": action.owner,
                "description": action.description,
                "type": action.type,
            }
        if view is not None:
            found.append((action, view))
    return found


# --- the report -----------------------------------------------------------------------------


def _mean_seconds(durations: Sequence[float]) -> float | None:
    return sum(durations) / len(durations) if durations else None


def _times(samples: list[tuple[str, float]]) -> dict[str, Any]:
    by_class: dict[str, list[float]] = defaultdict(list)
    for classification, seconds in samples:
        by_class[classification].append(seconds)
    return {
        "n": len(samples),
        "mean_seconds": _mean_seconds([s for _, s in samples]),
        "by_classification": {
            c: {"n": len(by_class[c]), "mean_seconds": _mean_seconds(by_class[c])}
            for c in CLASSIFICATIONS
        },
    }


def _objective_key(subject: str) -> tuple[str, str] | None:
    if not subject.startswith("objective:"):
        return None
    system_id, _, objective_id = subject.removeprefix("objective:").partition("/")
    return (system_id, objective_id) if objective_id else None


def management_review(period: Period, rows: ReviewRows, *, now: datetime) -> dict[str, Any]:
    """The clause 9.3 report as a JSON-ready dict (times are ISO strings in UTC)."""
    now = _utc(now)
    as_of = min(period.end, now)
    record_events = _events(rows.log, RECORD_KINDS)
    histories = [
        h
        for h in (_History(r, record_events.get(r.id, [])) for r in rows.records)
        if period.covers(h.record.system_id) and (h.raised_at in period or h.open_at(period.start))
    ]
    last_instant = period.end - timedelta(microseconds=1)

    def classification(history: _History) -> str:
        return history.classification_at(last_instant)

    raised = [h for h in histories if h.raised_at in period]
    finished: dict[str, list[_History]] = {s: [] for s in ("closed", "rejected", "withdrawn")}
    for history in histories:
        for status, found in finished.items():
            event = history.first(status)
            if event is not None and event.at in period:
                found.append(history)
    at_end: dict[str, Counter[str]] = {c: Counter() for c in CLASSIFICATIONS}
    for history in histories:
        at_end.setdefault(classification(history), Counter())[history.state_at(last_instant)] += 1
    unit, edges = buckets(period)
    trend = []
    for start, end in edges:
        last = end - timedelta(microseconds=1)
        trend.append(
            {
                "start": _iso(start),
                "end": _iso(end),
                "raised": {
                    c: sum(
                        1 for h in raised if start <= h.raised_at < end and classification(h) == c
                    )
                    for c in CLASSIFICATIONS
                },
                "closed": sum(
                    1
                    for h in finished["closed"]
                    if (e := h.first("closed")) is not None and start <= e.at < end
                ),
                "open_by_state": {
                    s: sum(1 for h in histories if h.open_at(last) and h.state_at(last) == s)
                    for s in OPEN_STATES
                },
            }
        )

    contain: list[tuple[str, float]] = []
    close: list[tuple[str, float]] = []
    for history in histories:
        contained = history.first(State.CONTAINED.value)
        if contained is not None and contained.at in period:
            contain.append(
                (classification(history), (contained.at - history.raised_at).total_seconds())
            )
        closed = history.first(State.CLOSED.value)
        if closed is not None and closed.at in period:
            close.append((classification(history), (closed.at - history.raised_at).total_seconds()))

    by_id = {h.record.id: h for h in histories}
    action_events = _events(rows.log, ACTION_KINDS)
    actions = [a for a in rows.actions if a.nonconformity_id in by_id]
    planned = [
        e
        for evs in action_events.values()
        for e in evs
        if e.kind == "action_planned" and e.at in period
    ]
    implemented = [
        e
        for evs in action_events.values()
        for e in evs
        if e.kind == "action_updated"
        and e.at in period
        and e.after.get("status") == "implemented"
        and e.before.get("status") != "implemented"
    ]
    overdue_actions = []
    for action, view in _actions_at(actions, action_events, as_of):
        due = _parse_time(view.get("due_at"))
        if view.get("status") in ("planned", "in_progress") and due is not None and due < as_of:
            record = by_id[action.nonconformity_id].record
            overdue_actions.append(
                {
                    "action_id": action.id,
                    "nonconformity_id": record.id,
                    "reference": record.reference,
                    "system_id": record.system_id,
                    "description": view.get("description", action.description),
                    "type": view.get("type", action.type),
                    "owner": view.get("owner", action.owner),
                    "status": view.get("status"),
                    "due_at": _iso(due),
                    "days_overdue": (as_of - due).total_seconds() / 86_400,
                }
            )
    overdue_actions.sort(key=lambda a: (str(a["due_at"]), str(a["action_id"])))
    overdue_records = [
        {
            "nonconformity_id": h.record.id,
            "reference": h.record.reference,
            "system_id": h.record.system_id,
            "classification": h.classification_at(as_of),
            "state": h.state_at(as_of),
            "owner": h.record.owner,
            "due_at": _iso(h.record.due_at),
            "days_overdue": (as_of - _utc(h.record.due_at)).total_seconds() / 86_400,
        }
        for h in histories
        if h.record.due_at is not None and h.open_at(as_of) and _utc(h.record.due_at) < as_of
    ]
    overdue_records.sort(key=lambda r: (str(r["due_at"]), str(r["reference"])))

    reviews = []
    automatic: Counter[str] = Counter()
    for history in histories:
        for event in history.events:
            if event.at not in period:
                continue
            if event.kind == "transition" and event.after.get("review_result"):
                reviews.append(
                    {
                        "nonconformity_id": history.record.id,
                        "reference": history.record.reference,
                        "result": event.after["review_result"],
                        "reviewer": event.after.get("reviewer") or history.record.reviewer,
                        "to_state": event.after.get("status"),
                        "at": _iso(event.at),
                        "log_seq": event.seq,
                    }
                )
    for entry in rows.log:
        if (
            entry.kind == "effectiveness_evidence"
            and entry.subject in by_id
            and _utc(entry.at) in period
            and isinstance(entry.after, dict)
        ):
            automatic[str(entry.after.get("status"))] += 1
    results = Counter(str(r["result"]) for r in reviews)

    return {
        "report": "management_review",
        "clause": "ISO/IEC 42001 9.3",
        "system_id": period.system_id,
        "from": _iso(period.start),
        "to": _iso(period.end),
        "as_of": _iso(as_of),
        "generated_at": _iso(now),
        "nonconformities": {
            "raised": len(raised),
            "closed": len(finished["closed"]),
            "rejected": len(finished["rejected"]),
            "withdrawn": len(finished["withdrawn"]),
            "recurrences": sum(1 for h in raised if h.record.recurrence_of),
            "open_at_start": sum(1 for h in histories if h.open_at(period.start)),
            "open_at_end": sum(1 for h in histories if h.open_at(last_instant)),
            "raised_by_classification": {
                c: sum(1 for h in raised if classification(h) == c) for c in CLASSIFICATIONS
            },
            "raised_by_source": dict(sorted(Counter(h.record.source for h in raised).items())),
            "at_end_by_state": {s: sum(counts[s] for counts in at_end.values()) for s in STATES},
            "at_end_by_classification_and_state": {
                c: {s: counts[s] for s in STATES} for c, counts in at_end.items()
            },
            "trend_unit": unit,
            "trend": trend,
        },
        "time_to_contain": _times(contain),
        "time_to_close": _times(close),
        "actions": {
            "planned": len(planned),
            "implemented": len(implemented),
            "overdue_count": len(overdue_actions),
            "overdue": overdue_actions,
        },
        "overdue_nonconformities": overdue_records,
        "effectiveness": {
            "results": {r: results[r] for r in ("confirmed", "not_effective", "inconclusive")},
            "automatic_evidence": {s: automatic[s] for s in ("met", "breached")},
            "reviews": reviews,
        },
        "objectives": _attainment(period, rows),
        "unattributed_windows": rows.unattributed_windows,
        "objective_changes": _objective_changes(period, rows.log),
    }


def _attainment(period: Period, rows: ReviewRows) -> list[dict[str, Any]]:
    """Share of judged windows (pass or breach) that met each objective."""
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for key in rows.objectives:
        if period.covers(key[0]):
            counts.setdefault(key, Counter())  # an objective with no windows is listed too
    for window in rows.windows:
        if period.covers(window.system_id) and window.window_start in period:
            counts[(window.system_id, window.objective_id)][window.status] += 1
    in_force = _versions_at(rows.log, period.end)
    found = []
    for (system_id, objective_id), by_status in sorted(counts.items()):
        judged = by_status["pass"] + by_status["breach"]
        key = (system_id, objective_id)
        definition = in_force.get(key) or rows.objectives.get(key) or {}
        found.append(
            {
                "system_id": system_id,
                "objective_id": objective_id,
                "metric": definition.get("metric"),
                "comparator": definition.get("comparator"),
                "threshold": definition.get("threshold"),
                "version": definition.get("version"),
                "windows": judged,
                "met": by_status["pass"],
                "breached": by_status["breach"],
                "not_judged": by_status["insufficient_data"] + by_status["error"],
                "attainment": by_status["pass"] / judged if judged else None,
            }
        )
    return found


def _versions_at(log: Sequence[LogEntry], at: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    """Each objective's version in force just before ``at``, as the log recorded it."""
    found: dict[tuple[str, str], tuple[datetime, dict[str, Any]]] = {}
    for entry in log:
        key = _objective_key(entry.subject)
        if entry.kind != "objective_changed" or key is None or not isinstance(entry.after, dict):
            continue
        changed_at = _parse_time(entry.after.get("changed_at")) or _utc(entry.at)
        if changed_at < at and (key not in found or found[key][0] <= changed_at):
            found[key] = (changed_at, entry.after)
    return {key: after for key, (_, after) in found.items()}


def _objective_changes(period: Period, log: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """Objective versions changed in the period (by the registry's change time)."""
    changes = []
    for entry in sorted(log, key=lambda e: e.seq):
        key = _objective_key(entry.subject)
        if entry.kind != "objective_changed" or key is None or not period.covers(key[0]):
            continue
        after = entry.after if isinstance(entry.after, dict) else {}
        before = entry.before if isinstance(entry.before, dict) else {}
        changed_at = _parse_time(after.get("changed_at")) or _utc(entry.at)
        if changed_at not in period:
            continue
        changes.append(
            {
                "system_id": key[0],
                "objective_id": key[1],
                "from_version": before.get("version"),
                "to_version": after.get("version"),
                "status": after.get("status"),
                "metric": after.get("metric"),
                "comparator": after.get("comparator"),
                "threshold": after.get("threshold"),
                "severity": after.get("severity"),
                "changed_by": entry.actor,
                "changed_at": _iso(changed_at),
                "reason": after.get("change_reason"),
                "log_seq": entry.seq,
            }
        )
    return changes


# --- charts (geometry for the HTML page; drawn as inline SVG by the template) ---------------


_STEPS = tuple(m * 10**e for e in range(12) for m in (1, 2, 5))
"""Axis steps for counts: whole numbers, at most five steps up to the tallest bar."""


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    width: int = 640,
    height: int = 200,
) -> dict[str, Any]:
    """Stacked vertical bars: one bar per label, one stacked segment per series
    ``(name, colour, values)``. Returns rectangles and axis ticks in SVG coordinates."""
    left, bottom, top = 36, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    peak = max([*totals, 1.0])
    step = next(s for s in _STEPS if peak / s <= 5)
    ceiling = float(-(-peak // step) * step)
    slot = plot_w / max(len(labels), 1)
    bar = max(slot * 0.7, 1.0)
    rects = []
    for i, label in enumerate(labels):
        y = float(top + plot_h)
        for name, colour, values in series:
            h = plot_h * values[i] / ceiling
            if h > 0:
                y -= h
                rects.append(
                    {
                        "x": left + i * slot + (slot - bar) / 2,
                        "y": y,
                        "w": bar,
                        "h": h,
                        "fill": colour,
                        "title": f"{label}: {name} {values[i]:g}",
                    }
                )
    every = max(1, -(-len(labels) // 12))
    return {
        "width": width,
        "height": height,
        "rects": rects,
        "baseline": top + plot_h,
        "left": left,
        "right": width - 8,
        "ticks": [
            {"y": top + plot_h - plot_h * v / ceiling, "label": f"{v:g}"}
            for v in (step * i for i in range(int(ceiling / step) + 1))
        ],
        "labels": [
            {"x": left + i * slot + slot / 2, "text": label}
            for i, label in enumerate(labels)
            if i % every == 0
        ],
        "legend": [{"name": name, "fill": colour} for name, colour, _ in series],
    }
