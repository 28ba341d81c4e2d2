"""A hand-built history for the management review and evidence pack tests: records, actions,
a hash-chained improvement log with chosen times, judged windows and objective versions.

March 2026 of the AI system ``credit`` (and one record of ``fraud``), every time chosen so
the expected numbers can be worked out by hand (tests/alerts/test_review.py does).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.alerts.app import MIGRATIONS, create_app
from services.alerts.crud import snapshot
from services.alerts.models import (
    CorrectiveAction,
    LogEntry,
    LogHead,
    Nonconformity,
    Occurrence,
    SeenObjective,
    WindowVerdict,
)
from services.alerts.review import Window
from services.alerts.semantics import GENESIS, canonical_entry, chain_hash, fingerprint
from services.alerts.settings import Settings
from shared.bus import MemoryBus
from shared.contracts import (
    Comparator,
    FeatureSpec,
    FeatureType,
    Objective,
    SystemSnapshot,
    Task,
    encode,
)
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from tests.deployments import fresh_database

__all__ = [
    "ReviewFixture",
    "at",
    "build",
    "database",
    "registry_snapshot",
    "serve",
    "write",
]

PSI_PARAMETERS = {"feature": "income", "method": "psi"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class ReviewFixture:
    records: dict[str, Nonconformity] = field(default_factory=dict)
    actions: dict[str, CorrectiveAction] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    verdicts: list[WindowVerdict] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    seen: list[SeenObjective] = field(default_factory=list)
    _pending: list[tuple[datetime, str, str, str, Any, Any]] = field(default_factory=list)

    # --- building ---------------------------------------------------------------------------

    def _entry(
        self, when: datetime, kind: str, subject: str, before: Any, after: Any, actor: str
    ) -> None:
        self._pending.append((when, actor, kind, subject, before, after))

    def record(
        self,
        key: str,
        *,
        raised: str,
        classification: str,
        system_id: str = "credit",
        objective_id: str = "acc",
        source: str = "monitoring",
        due: str,
        recurrence_of: str | None = None,
    ) -> Nonconformity:
        when = at(raised)
        nc = Nonconformity(
            id=f"nc-{key}",
            fingerprint=fingerprint(system_id, objective_id, {})
            if source == "monitoring"
            else f"manual-nc-{key}",
            system_id=system_id,
            objective_id=objective_id,
            objective_version=1,
            metric="accuracy",
            severity=classification,
            first_evaluation_id=f"{system_id}:{objective_id}:v1:{key}:r0",
            last_evaluation_id=f"{system_id}:{objective_id}:v1:{key}:r0",
            last_value=0.7,
            threshold=0.8,
            comparator="ge",
            reference=f"NC-2026-{len(self.records) + 1:04d}",
            source=source,
            title=f"record {key}",
            classification=classification,
            owner="owen",
            due_at=at(due),
            recurrence_of=recurrence_of,
            raised_at=when,
            updated_at=when,
        )
        self.records[key] = nc
        kind, after = "manual_record", snapshot(nc)
        if source == "monitoring":  # as the consumer logs a raise: with its evaluation
            kind, after = "raised", {**after, "evaluation_id": nc.first_evaluation_id}
            day = when.replace(hour=0)
            self.occurrences.append(
                Occurrence(
                    nonconformity_id=nc.id,
                    evaluation_id=nc.first_evaluation_id,
                    objective_version=1,
                    window_start=day,
                    window_end=day + timedelta(days=1),
                    value=0.7,
                    recorded_at=when,
                )
            )
        self._entry(when, kind, nc.id, None, after, "alerts")
        return nc

    def step(self, key: str, when_text: str, to: str, **fields: Any) -> None:
        nc, when = self.records[key], at(when_text)
        before = snapshot(nc)
        for name, value in fields.items():
            if hasattr(nc, name):
                setattr(nc, name, value)
        nc.status = to
        if to in ("closed", "rejected"):
            nc.open, nc.closed_at = False, when
        nc.updated_at = when
        self._entry(when, "transition", nc.id, before, {**snapshot(nc), **fields}, "quinn")

    def withdraw(self, key: str, when_text: str) -> None:
        nc, when = self.records[key], at(when_text)
        before = snapshot(nc)
        nc.status, nc.open, nc.closed_at, nc.occurrences = "withdrawn", False, when, 0
        self._entry(when, "withdrawn", nc.id, before, snapshot(nc), "alerts")

    def reclassify(self, key: str, when_text: str, classification: str) -> None:
        nc = self.records[key]
        before = snapshot(nc)
        nc.classification = classification
        after = {**snapshot(nc), "reason": "lower impact than assumed"}
        self._entry(at(when_text), "classification", nc.id, before, after, "quinn")

    def action(self, key: str, record: str, when_text: str, *, due: str) -> None:
        nc, when = self.records[record], at(when_text)
        action = CorrectiveAction(
            id=f"act-{key}",
            nonconformity_id=nc.id,
            description=f"action {key}",
            owner="olivia",
            due_at=at(due),
            created_by="quinn",
            created_at=when,
            updated_at=when,
        )
        self.actions[key] = action
        self._entry(when, "action_planned", nc.id, None, _action_view(action), "quinn")

    def update_action(self, key: str, when_text: str, status: str) -> None:
        action = self.actions[key]
        before = _action_view(action)
        action.status = status
        if status == "implemented":
            action.evidence_links = ["https://git.example.org/pr/7"]
        action.updated_at = at(when_text)
        after = _action_view(action)
        self._entry(
            at(when_text), "action_updated", action.nonconformity_id, before, after, "quinn"
        )

    def evidence(self, key: str, when_text: str, status: str) -> None:
        nc = self.records[key]
        after = {"status": status, "needed": 3, "consecutive_met": 3, "breached": False}
        nc.review_evidence = after
        self._entry(
            at(when_text), "effectiveness_evidence", nc.id, {"status": "watching"}, after, "alerts"
        )

    def objective_changed(
        self, when_text: str, objective_id: str, version: int, threshold: float, metric: str
    ) -> None:
        after = {
            "version": version,
            "status": "active",
            "metric": metric,
            "comparator": "ge" if metric == "accuracy" else "lt",
            "threshold": threshold,
            "severity": "major",
            "changed_at": at(when_text).isoformat(),
            "change_reason": f"version {version}",
        }
        before = {"version": version - 1} if version > 1 else None
        subject = f"objective:credit/{objective_id}"
        self._entry(at(when_text), "objective_changed", subject, before, after, "alice")

    def window(
        self,
        start: str,
        status: str,
        *,
        system_id: str = "credit",
        objective_id: str = "acc",
        parameters: dict[str, str] | None = None,
    ) -> None:
        print_ = fingerprint(system_id, objective_id, parameters or {})
        evaluation_id = f"{system_id}:{objective_id}:v1:{start}:r0"
        self.verdicts.append(
            WindowVerdict(
                fingerprint=print_,
                window_start=at(start),
                evaluation_id=evaluation_id,
                revision=0,
                status=status,
            )
        )
        self.windows.append(Window(system_id, objective_id, at(start), status, evaluation_id))

    def finish(self) -> None:
        """Chain the log in time order: seq, prev_hash and hash as crud.append_log makes them."""
        previous = GENESIS
        for seq, (when, actor, kind, subject, before, after) in enumerate(
            sorted(self._pending, key=lambda e: e[0]), start=1
        ):
            canonical = canonical_entry(
                seq=seq,
                at=when.replace(tzinfo=None).isoformat(timespec="microseconds"),
                actor=actor,
                kind=kind,
                subject=subject,
                before=before,
                after=after,
            )
            entry = LogEntry(
                seq=seq,
                at=when,
                actor=actor,
                kind=kind,
                subject=subject,
                before=before,
                after=after,
                prev_hash=previous,
                hash=chain_hash(previous, canonical),
            )
            self.log.append(entry)
            previous = entry.hash


def _action_view(action: CorrectiveAction) -> dict[str, Any]:
    return {
        "action_id": action.id,
        "description": action.description,
        "type": action.type,
        "owner": action.owner,
        "due_at": action.due_at.isoformat(),
        "status": action.status,
        "evidence_links": list(action.evidence_links),
    }


def build() -> ReviewFixture:
    """The history (times UTC). Review period: [2026-03-01, 2026-04-01), system credit."""
    f = ReviewFixture()
    f.objective_changed("2026-01-01T00:00:00", "acc", 1, 0.8, "accuracy")
    f.objective_changed("2026-02-01T00:00:00", "psi", 1, 0.1, "psi")
    f.objective_changed("2026-03-15T00:00:00", "acc", 2, 0.85, "accuracy")
    # E: closed before the period (out of scope), later recurring as B
    f.record("E", raised="2026-01-10T00:00:00", classification="major", due="2026-02-09T00:00:00")
    for when, to in [
        ("2026-01-10T01:00:00", "triaged"),
        ("2026-01-11T00:00:00", "contained"),
        ("2026-01-12T00:00:00", "cause_analysed"),
    ]:
        f.step("E", when, to)
    f.action("e1", "E", "2026-01-12T01:00:00", due="2026-01-20T00:00:00")
    f.step("E", "2026-01-12T02:00:00", "action_planned")
    f.update_action("e1", "2026-01-15T00:00:00", "implemented")
    f.step("E", "2026-01-15T01:00:00", "action_implemented")
    f.step("E", "2026-02-01T00:00:00", "effectiveness_review", reviewer="rita")
    f.step("E", "2026-02-10T00:00:00", "closed", review_result="confirmed")
    # C: an audit finding raised before the period, contained in it, overdue at its end
    f.record(
        "C",
        raised="2026-02-20T00:00:00",
        classification="observation",
        source="audit",
        due="2026-03-20T00:00:00",
    )
    f.step("C", "2026-02-21T00:00:00", "triaged")
    f.step("C", "2026-03-10T00:00:00", "contained", containment="manual checks")  # 18 days
    # A: major, contained in 24 h, closed after 10 days as effective
    f.record("A", raised="2026-03-02T10:00:00", classification="major", due="2026-04-01T10:00:00")
    f.step("A", "2026-03-02T12:00:00", "triaged")
    f.step("A", "2026-03-03T10:00:00", "contained", containment="fallback model")
    f.step("A", "2026-03-04T10:00:00", "cause_analysed", root_cause="drifted income")
    f.action("a1", "A", "2026-03-04T11:00:00", due="2026-03-10T00:00:00")
    f.step("A", "2026-03-04T12:00:00", "action_planned")
    f.update_action("a1", "2026-03-08T00:00:00", "implemented")
    f.step("A", "2026-03-08T01:00:00", "action_implemented")
    f.step("A", "2026-03-09T00:00:00", "effectiveness_review", reviewer="rita")
    f.evidence("A", "2026-03-11T00:00:00", "met")
    f.step("A", "2026-03-12T10:00:00", "closed", review_result="confirmed")
    # B: minor, a recurrence of E, contained in 12 h, its action overdue since 15 March
    f.record(
        "B",
        raised="2026-03-05T00:00:00",
        classification="minor",
        due="2026-05-04T00:00:00",
        recurrence_of="nc-E",
    )
    f.step("B", "2026-03-05T06:00:00", "triaged")
    f.step("B", "2026-03-05T12:00:00", "contained", containment="threshold alert to ops")
    f.step("B", "2026-03-06T00:00:00", "cause_analysed", root_cause="stale reference")
    f.action("b1", "B", "2026-03-06T01:00:00", due="2026-03-15T00:00:00")
    f.step("B", "2026-03-06T02:00:00", "action_planned")
    f.update_action("b1", "2026-03-07T00:00:00", "in_progress")
    # D: raised minor, reclassified as an observation, rejected as a false positive
    f.record("D", raised="2026-03-20T00:00:00", classification="minor", due="2026-05-19T00:00:00")
    f.reclassify("D", "2026-03-20T12:00:00", "observation")
    f.step("D", "2026-03-21T00:00:00", "rejected", reason="test traffic")
    # G: minor, its only breach revised away the same day
    f.record("G", raised="2026-03-25T00:00:00", classification="minor", due="2026-05-24T00:00:00")
    f.withdraw("G", "2026-03-25T12:00:00")
    # H: another system's record (only in the all-systems report), contained in 1 h
    f.record(
        "H",
        raised="2026-03-03T00:00:00",
        classification="major",
        system_id="fraud",
        objective_id="f1",
        due="2026-04-02T00:00:00",
    )
    f.step("H", "2026-03-03T00:30:00", "triaged")
    f.step("H", "2026-03-03T01:00:00", "contained", containment="manual review")
    # judged windows: acc 7 met / 3 breached / 2 without enough data in March, one in
    # February (outside); psi 4 met; fraud's f1 2 breached
    for day in range(1, 11):
        f.window(f"2026-03-{day:02d}T00:00:00", "pass" if day <= 7 else "breach")
    f.window("2026-03-11T00:00:00", "insufficient_data")
    f.window("2026-03-12T00:00:00", "insufficient_data")
    f.window("2026-02-28T00:00:00", "breach")
    for day in (1, 8, 15, 22):
        f.window(
            f"2026-03-{day:02d}T00:00:00", "pass", objective_id="psi", parameters=PSI_PARAMETERS
        )
    for day in (3, 4):
        f.window(f"2026-03-{day:02d}T00:00:00", "breach", system_id="fraud", objective_id="f1")
    f.seen = [
        SeenObjective(system_id="credit", objective_id="acc", version=2),
        SeenObjective(system_id="credit", objective_id="psi", version=1),
    ]
    f.finish()
    return f


def write(db: Database, fixture: ReviewFixture) -> None:
    """Store the fixture as the service would have (the log's head included)."""
    with db.session() as session:
        for row in [
            *fixture.records.values(),
            *fixture.actions.values(),
            *fixture.log,
            *fixture.occurrences,
            *fixture.verdicts,
            *fixture.seen,
        ]:
            session.add(row.model_copy())
        last = fixture.log[-1]
        session.merge(LogHead(id=1, seq=last.seq, hash=last.hash))  # the migration made one
        # a window of an objective nobody knows (for the all-systems report's honesty count)
        session.add(
            WindowVerdict(
                fingerprint="0" * 32,
                window_start=at("2026-03-02T00:00:00"),
                evaluation_id="ghost",
                revision=0,
                status="pass",
            )
        )
        session.commit()


def registry_snapshot() -> SystemSnapshot:
    """credit as the registry topic has it: acc v2 and the PSI objective on income."""
    changed = at("2026-03-15T00:00:00")

    def objective(objective_id: str, **fields: Any) -> Objective:
        return Objective(
            id=objective_id,
            system_id="credit",
            window_seconds=86_400,
            owner="owen",
            rationale="wrong decisions harm applicants",
            changed_by="alice",
            **fields,
        )

    return SystemSnapshot(
        system_id="credit",
        name="Credit scoring",
        owner="ml-team@example.org",
        task=Task.BINARY_CLASSIFICATION,
        features=[FeatureSpec(name="income", type=FeatureType.NUMERIC)],
        objectives=[
            objective(
                "acc",
                version=2,
                metric="accuracy",
                comparator=Comparator.GE,
                threshold=0.85,
                changed_at=changed,
                change_reason="version 2",
            ),
            objective(
                "psi",
                version=1,
                metric="psi",
                comparator=Comparator.LT,
                threshold=0.1,
                parameters=PSI_PARAMETERS,
                changed_at=at("2026-02-01T00:00:00"),
                change_reason="version 1",
            ),
        ],
        updated_at=changed,
    )


def database(kind: str, tmp_path: Path, postgres_url: Callable[[], str]) -> str:
    """A migrated database of ``kind`` (sqlite or postgresql) holding the fixture."""
    url = (
        f"sqlite:///{tmp_path / 'alerts.db'}"
        if kind == "sqlite"
        else fresh_database(postgres_url())
    )
    db = Database(url)
    try:
        upgrade(db.engine, OUTBOX)
        upgrade(db.engine, MIGRATIONS)
        write(db, build())
    finally:
        db.dispose()
    return url


@contextlib.asynccontextmanager
async def serve(url: str, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    """The alerts service on ``url`` with the registry topic naming credit, over ASGI."""
    bus = MemoryBus()
    await bus.start()
    try:
        await bus.producer.send(bus.topics.registry, encode(registry_snapshot()), key=b"credit")
        app = create_app(Settings(database_url=url, auth_secret=secret), bus=bus)
        async with app.router.lifespan_context(app):
            if not await app.state.registry_view.wait_loaded(30):
                raise AssertionError("the registry view did not load")
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
                yield client
    finally:
        await bus.stop()
