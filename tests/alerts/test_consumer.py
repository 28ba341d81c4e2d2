"""Applying evaluations to nonconformity records: one record per fingerprint, replays ignored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from services.alerts import crud
from services.alerts.app import MIGRATIONS
from services.alerts.consumer import apply_batch, apply_evaluation
from services.alerts.models import LogEntry, Nonconformity, Occurrence
from services.alerts.semantics import State, TransitionError
from shared.contracts import (
    Comparator,
    EvaluationResult,
    EvaluationStatus,
    NonconformityChange,
    NonconformityChanged,
    Objective,
    Severity,
)
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from shared.outbox import OutboxMessage
from tests.factories import make_evaluation


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.db'}"
    else:
        from tests.deployments import fresh_database

        url = fresh_database(request.getfixturevalue("database_url"))
    database = Database(url)
    upgrade(database.engine, OUTBOX)
    upgrade(database.engine, MIGRATIONS)
    yield database
    database.dispose()


def evaluation(status: EvaluationStatus, window: int, value: float = 0.5) -> EvaluationResult:
    return make_evaluation(
        status,
        window,
        evaluation_id=f"e-{window}-{uuid.uuid4().hex[:6]}",
        system_id="sys",
        first_window=datetime(2026, 1, 1, tzinfo=UTC),
        value=value,
    )


def test_breaches_make_one_record_with_occurrences(db: Database) -> None:
    changes = []
    results = [evaluation(EvaluationStatus.BREACH, w) for w in range(3)]
    for result in [*results, results[1]]:  # the last one is a redelivery
        with db.session() as session:
            changes.append(
                apply_evaluation(session=session, result=result, objective=None, topic="nc")
            )
    assert [c.change if c else None for c in changes] == [
        NonconformityChange.RAISED,
        NonconformityChange.OCCURRENCE,
        NonconformityChange.OCCURRENCE,
        None,
    ]
    with db.session() as session:
        [nc] = session.exec(select(Nonconformity)).all()
        assert nc.occurrences == 3
        assert nc.first_evaluation_id == results[0].id
        assert nc.last_evaluation_id == results[2].id
        outbox = session.exec(select(OutboxMessage)).all()
        assert [m.topic for m in outbox] == ["nc", "nc", "nc"]
        assert {m.key for m in outbox} == {nc.id.encode()}


def test_pass_clears_but_does_not_close(db: Database) -> None:
    for result in [evaluation(EvaluationStatus.BREACH, 0), evaluation(EvaluationStatus.PASS, 1)]:
        with db.session() as session:
            apply_evaluation(session=session, result=result, objective=None, topic="nc")
    with db.session() as session:
        [nc] = session.exec(select(Nonconformity)).all()
        assert nc.condition_cleared is True
        assert nc.open is True
        assert nc.status == "raised"


# --- raising completed: replays, revisions, pending/clearing, inhibition, silences, recurrence


def objective(
    *, pending: int = 1, clearing: int = 1, severity: Severity = Severity.MAJOR
) -> Objective:
    return Objective(
        id="acc",
        version=1,
        system_id="sys",
        metric="accuracy",
        comparator=Comparator.GE,
        threshold=0.8,
        window_seconds=60,
        severity=severity,
        pending_windows=pending,
        clearing_windows=clearing,
        owner="owen",
        changed_by="owen",
        changed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def judged(
    status: EvaluationStatus,
    window: int,
    *,
    revision: int = 0,
    objective_id: str = "acc",
    metric: str = "accuracy",
) -> EvaluationResult:
    result = evaluation(status, window)
    return result.model_copy(
        update={
            "id": f"{objective_id}-{window}-r{revision}-{uuid.uuid4().hex[:6]}",
            "revision": revision,
            "objective_id": objective_id,
            "metric": metric,
        }
    )


def apply(
    db: Database, result: EvaluationResult, target: Objective | None = None
) -> NonconformityChanged | None:
    with db.session() as session:
        return apply_evaluation(
            session=session, result=result, objective=target or objective(), topic="nc"
        )


def records(db: Database) -> list[Nonconformity]:
    with db.session() as session:
        return list(session.exec(select(Nonconformity).order_by(col(Nonconformity.raised_at))))


def log_kinds(db: Database) -> list[str]:
    with db.session() as session:
        return [e.kind for e in session.exec(select(LogEntry).order_by(col(LogEntry.seq)))]


def test_a_thousand_replayed_evaluations_make_one_record(db: Database) -> None:
    windows = [judged(EvaluationStatus.BREACH, w) for w in range(5)]
    for result in windows:
        apply(db, result)
    kinds = log_kinds(db)
    for copy in range(200):  # 1,000 more: redeliveries, and re-publications under new ids
        for result in windows:
            again = result if copy % 2 else result.model_copy(update={"id": uuid.uuid4().hex})
            assert apply(db, again) is None
    [nc] = records(db)
    assert nc.occurrences == 5
    assert nc.reference == f"NC-{datetime.now(UTC).year}-0001"
    assert nc.classification == "major" and nc.owner == "owen"
    assert log_kinds(db) == kinds == ["raised"] + ["occurrence"] * 4
    with db.session() as session:
        assert len(session.exec(select(OutboxMessage)).all()) == 5
        evidence = session.exec(select(Occurrence).order_by(col(Occurrence.window_start))).all()
        assert [o.evaluation_id for o in evidence] == [r.id for r in windows]


def test_a_revision_withdrawing_the_only_breach_leaves_no_open_record(db: Database) -> None:
    first = judged(EvaluationStatus.BREACH, 0)
    assert apply(db, first).change is NonconformityChange.RAISED  # type: ignore[union-attr]
    withdrawn = apply(db, judged(EvaluationStatus.PASS, 0, revision=1))
    assert withdrawn is not None and withdrawn.status == "withdrawn"
    assert apply(db, first.model_copy(update={"id": "old-revision-again"})) is None
    [nc] = records(db)
    assert (nc.status, nc.open, nc.occurrences) == ("withdrawn", False, 0)
    assert log_kinds(db) == ["raised", "withdrawn"]


def test_a_revision_into_a_breach_raises_and_out_of_one_removes_an_occurrence(
    db: Database,
) -> None:
    assert apply(db, judged(EvaluationStatus.PASS, 0)) is None
    raised = apply(db, judged(EvaluationStatus.BREACH, 0, revision=1))
    assert raised is not None and raised.change is NonconformityChange.RAISED
    apply(db, judged(EvaluationStatus.BREACH, 1))
    apply(db, judged(EvaluationStatus.PASS, 1, revision=1))  # the second breach revised away
    [nc] = records(db)
    assert (nc.status, nc.open, nc.occurrences) == ("raised", True, 1)
    assert log_kinds(db) == ["raised", "occurrence", "occurrence_withdrawn"]
    with db.session() as session:
        last = session.exec(select(LogEntry).where(LogEntry.kind == "raised")).one()
        assert last.after["by_revision"] is True


def test_pending_and_clearing_windows(db: Database) -> None:
    target = objective(pending=3, clearing=2)
    statuses = ["breach", "breach", "pass", "breach", "breach", "breach", "breach", "pass", "pass"]
    changes = [apply(db, judged(EvaluationStatus(s), w), target) for w, s in enumerate(statuses)]
    assert [c.change.value if c else None for c in changes] == [
        None, None, None, None, None, "raised", "occurrence", None, "cleared",
    ]  # fmt: skip
    [nc] = records(db)
    assert (nc.occurrences, nc.condition_cleared, nc.open) == (2, True, True)


@pytest.mark.parametrize(
    "inhibitor,metric",
    [
        (EvaluationStatus.INSUFFICIENT_DATA, "label_coverage"),
        (EvaluationStatus.BREACH, "missing_rate"),
    ],
)
def test_missing_data_and_broken_inputs_inhibit_performance_raises(
    db: Database, inhibitor: EvaluationStatus, metric: str
) -> None:
    apply(db, judged(inhibitor, 0, objective_id="inputs", metric=metric))
    assert apply(db, judged(EvaluationStatus.BREACH, 0)) is None  # same system and window
    raised = apply(db, judged(EvaluationStatus.BREACH, 1))  # the next window is judged
    assert raised is not None and raised.change is NonconformityChange.RAISED
    assert "raise_inhibited" in log_kinds(db)
    performance = [nc for nc in records(db) if nc.objective_id == "acc"]
    assert len(performance) == 1 and performance[0].occurrences == 1


@pytest.mark.parametrize(
    "inhibitor,metric",
    [
        (EvaluationStatus.INSUFFICIENT_DATA, "label_coverage"),
        (EvaluationStatus.BREACH, "missing_rate"),
    ],
)
def test_an_inhibition_arriving_after_the_raise_withdraws_it(
    db: Database, inhibitor: EvaluationStatus, metric: str
) -> None:
    """The data-quality breach (or missing data) of window 0 is evaluated after the accuracy
    breach of window 0 raised a record: that window was its only breach, so the record is
    withdrawn, as if the inhibiting evaluation had come first."""
    raised = apply(db, judged(EvaluationStatus.BREACH, 0))
    assert raised is not None and raised.change is NonconformityChange.RAISED
    late = judged(inhibitor, 0, objective_id="inputs", metric=metric)
    apply(db, late)
    [performance] = [nc for nc in records(db) if nc.objective_id == "acc"]
    assert (performance.status, performance.open, performance.occurrences) == (
        "withdrawn",
        False,
        0,
    )
    with db.session() as session:
        entry = session.exec(
            select(LogEntry).where(LogEntry.kind == "withdrawn", LogEntry.subject == performance.id)
        ).one()
        evidence = session.exec(
            select(Occurrence).where(Occurrence.nonconformity_id == performance.id)
        ).one()
        assert crud.verify_log(session=session).ok
    assert entry.after["by_evaluation"] == late.id and "inhibited" in entry.after["why"]
    assert evidence.withdrawn is True
    again = apply(db, judged(EvaluationStatus.BREACH, 1))  # the next window raises afresh
    assert again is not None and again.change is NonconformityChange.RAISED
    [_, fresh] = [nc for nc in records(db) if nc.objective_id == "acc"]
    assert (fresh.open, fresh.occurrences, fresh.recurrence_of) == (True, 1, None)


def test_a_revision_to_insufficient_data_withdraws_as_a_revision(db: Database) -> None:
    """The window's own evaluation revised to insufficient_data both withdraws its breach and
    inhibits the window: the log names the revision (one withdrawal, not two)."""
    apply(db, judged(EvaluationStatus.BREACH, 0))
    apply(db, judged(EvaluationStatus.INSUFFICIENT_DATA, 0, revision=1))
    [nc] = records(db)
    assert (nc.status, nc.occurrences) == ("withdrawn", 0)
    with db.session() as session:
        [entry] = session.exec(select(LogEntry).where(LogEntry.kind == "withdrawn")).all()
    assert entry.after["why"] == "its only breach was revised"
    assert log_kinds(db) == ["raised", "withdrawn"]


def test_inhibition_decides_the_same_whether_it_arrives_before_or_after_the_raise(
    db: Database,
) -> None:
    """Results depend on the evaluations, not on their order: an accuracy record breaching in
    windows 0 and 1, with window 0's inputs broken, counts one occurrence either way."""
    breaches = [judged(EvaluationStatus.BREACH, w) for w in (0, 1)]
    broken = judged(EvaluationStatus.BREACH, 0, objective_id="inputs", metric="missing_rate")
    for system, order in (("first", [broken, *breaches]), ("last", [*breaches, broken])):
        for result in order:
            apply(db, result.model_copy(update={"system_id": system, "id": system + result.id}))
    with db.session() as session:  # the same in one batch
        batch = [r.model_copy(update={"system_id": "batch", "id": "b" + r.id}) for r in breaches]
        batch.append(broken.model_copy(update={"system_id": "batch", "id": "b" + broken.id}))
        apply_batch(session=session, items=[(r, objective()) for r in batch], topic="nc")
        session.commit()
        assert crud.verify_log(session=session).ok
    outcome = {
        nc.system_id: (nc.status, nc.open, nc.occurrences)
        for nc in records(db)
        if nc.objective_id == "acc" and nc.open
    }
    assert outcome == {system: ("raised", True, 1) for system in ("first", "last", "batch")}
    assert "occurrence_withdrawn" in log_kinds(db)


def test_silences_hold_raises_back_until_they_expire(db: Database) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as session:
        silence = crud.create_silence(
            session=session,
            data={
                "matchers": {"system_id": "sys", "severity": "major"},
                "reason": "planned retraining",
                "starts_at": base,
                "expires_at": base + timedelta(minutes=3),
            },
            actor="qm",
        )
        session.commit()
    assert apply(db, judged(EvaluationStatus.BREACH, 0)) is None
    assert apply(db, judged(EvaluationStatus.BREACH, 1)) is None
    raised = apply(db, judged(EvaluationStatus.BREACH, 3))  # ends after the expiry
    assert raised is not None and raised.change is NonconformityChange.RAISED
    assert log_kinds(db) == ["silence_created", "raise_silenced", "raise_silenced", "raised"]
    with db.session() as session:
        entry = session.exec(select(LogEntry).where(LogEntry.kind == "raise_silenced")).first()
        assert entry is not None and entry.after["silence_id"] == silence.id


def test_a_silence_expired_early_stops_holding_back(db: Database) -> None:
    with db.session() as session:
        silence = crud.create_silence(
            session=session,
            data={
                "matchers": {"objective_id": "acc"},
                "reason": "noisy",
                "starts_at": datetime(2025, 1, 1, tzinfo=UTC),
                "expires_at": datetime.now(UTC) + timedelta(days=1),
            },
            actor="qm",
        )
        session.commit()
        assert apply(db, judged(EvaluationStatus.BREACH, 0)) is None
        crud.expire_silence(session=session, silence=silence, actor="qm2")
        session.commit()
    late = judged(EvaluationStatus.BREACH, 1).model_copy(
        update={"window_end": datetime.now(UTC) + timedelta(minutes=1)}
    )
    assert apply(db, late) is not None
    assert log_kinds(db) == ["silence_created", "raise_silenced", "silence_expired", "raised"]


def walk_to_closed(db: Database, nc_id: str, until: State = State.CLOSED) -> None:
    """Take a record through every step of the lifecycle, as a quality manager would."""
    steps: list[tuple[State, dict[str, object]]] = [
        (State.TRIAGED, {"owner": "owen"}),
        (State.CONTAINED, {"containment": "rolled back to v1", "consequences": "none"}),
        (State.CAUSE_ANALYSED, {"root_cause_method": "five_whys", "root_cause": "stale data"}),
        (State.ACTION_PLANNED, {}),
        (State.ACTION_IMPLEMENTED, {}),
        (
            State.EFFECTIVENESS_REVIEW,
            {"reviewer": "rita", "review_method": "monitoring", "review_criteria": "3 windows"},
        ),
        (State.CLOSED, {"review_result": "confirmed"}),
    ]
    for target, data in steps:
        with db.session() as session:
            nc = session.get(Nonconformity, nc_id)
            assert nc is not None
            if target is State.ACTION_PLANNED:
                crud.add_action(
                    session=session,
                    nc=nc,
                    data={
                        "description": "refresh the feature store",
                        "owner": "olivia",
                        "due_at": datetime.now(UTC) + timedelta(days=7),
                    },
                    actor="qm",
                )
            if target is State.ACTION_IMPLEMENTED:
                for action in crud.actions_of(session=session, nc_id=nc_id):
                    crud.update_action(
                        session=session,
                        action=action,
                        data={"status": "implemented", "evidence_links": ["https://ci/run/1"]},
                        actor="qm",
                    )
            crud.transition(
                session=session, nc=nc, target=target, data=data, actor="qm", topic="nc"
            )
            session.commit()
        if target is until:
            return


def test_a_breach_after_closing_opens_a_linked_record(db: Database) -> None:
    apply(db, judged(EvaluationStatus.BREACH, 0))
    [first] = records(db)
    walk_to_closed(db, first.id)
    apply(db, judged(EvaluationStatus.PASS, 1))
    again = apply(db, judged(EvaluationStatus.BREACH, 2))
    assert again is not None and again.change is NonconformityChange.RAISED
    old, new = records(db)
    assert (old.status, old.open) == ("closed", False)
    assert new.recurrence_of == old.id and new.open
    assert new.reference == f"NC-{datetime.now(UTC).year}-0002"
    with db.session() as session:
        assert crud.verify_log(session=session).ok


def test_an_edited_log_row_is_named_by_verify(db: Database) -> None:
    for window in range(4):
        apply(db, judged(EvaluationStatus.BREACH, window))
    with db.session() as session:
        assert crud.verify_log(session=session) == crud.LogVerification(True, 4)
    with db.engine.begin() as conn:  # an edit made directly in the database
        conn.execute(text("UPDATE alerts_log SET actor = 'mallory' WHERE seq = 3"))
    with db.session() as session:
        found = crud.verify_log(session=session)
    assert (found.ok, found.first_broken_seq) == (False, 3)
    assert found.reason == "its content does not match its hash"


def after_now(status: EvaluationStatus, window: int) -> EvaluationResult:
    """A window starting after the actions were implemented."""
    start = datetime.now(UTC) + timedelta(minutes=1 + window)
    return judged(status, window).model_copy(
        update={"window_start": start, "window_end": start + timedelta(minutes=1)}
    )


def evidence_of(db: Database) -> dict[str, Any]:
    [nc] = [r for r in records(db) if r.open]
    return dict(nc.review_evidence)


def test_implemented_actions_are_checked_on_the_next_windows(db: Database) -> None:
    apply(db, judged(EvaluationStatus.BREACH, 0))
    [nc] = records(db)
    walk_to_closed(db, nc.id, until=State.ACTION_IMPLEMENTED)
    assert evidence_of(db)["status"] == "watching"
    apply(db, judged(EvaluationStatus.PASS, 1))  # a window from before the actions: ignored
    for window in range(2):
        apply(db, after_now(EvaluationStatus.PASS, window))
        assert evidence_of(db)["status"] == "watching"
    apply(db, after_now(EvaluationStatus.PASS, 2))
    evidence = evidence_of(db)
    assert (evidence["status"], evidence["consecutive_met"]) == ("met", 3)
    assert len(evidence["windows"]) == 3
    assert log_kinds(db)[-1] == "effectiveness_evidence"


def test_actions_implemented_before_the_plan_step_are_checked_too(db: Database) -> None:
    """Actions can be implemented while the record is still cause_analysed: the evidence is
    watched from then on (the consumer reads it in every state that can have actions)."""
    apply(db, judged(EvaluationStatus.BREACH, 0))
    [nc] = records(db)
    walk_to_closed(db, nc.id, until=State.CAUSE_ANALYSED)
    with db.session() as session:
        record = session.get(Nonconformity, nc.id)
        assert record is not None
        action = crud.add_action(
            session=session,
            nc=record,
            data={"description": "d", "owner": "olivia", "due_at": datetime.now(UTC)},
            actor="qm",
        )
        crud.update_action(
            session=session,
            action=action,
            data={"status": "implemented", "evidence_links": ["https://ci/run/2"]},
            actor="qm",
        )
        session.commit()
    assert (records(db)[0].status, evidence_of(db)["status"]) == ("cause_analysed", "watching")
    for window in range(3):
        apply(db, after_now(EvaluationStatus.PASS, window))
    assert evidence_of(db)["status"] == "met"


def test_a_breach_after_the_actions_blocks_closing_without_a_reason(db: Database) -> None:
    apply(db, judged(EvaluationStatus.BREACH, 0))
    [nc] = records(db)
    walk_to_closed(db, nc.id, until=State.EFFECTIVENESS_REVIEW)
    apply(db, after_now(EvaluationStatus.PASS, 0))
    apply(db, after_now(EvaluationStatus.BREACH, 1))
    evidence = evidence_of(db)
    assert (evidence["status"], evidence["breached"]) == ("breached", True)
    with db.session() as session:
        record = session.get(Nonconformity, nc.id)
        assert record is not None
        with pytest.raises(TransitionError, match="needs a reason"):
            crud.transition(
                session=session,
                nc=record,
                target=State.CLOSED,
                data={"review_result": "confirmed"},
                actor="rita",
                topic="nc",
            )
        session.rollback()
        record = session.get(Nonconformity, nc.id)
        assert record is not None
        crud.transition(
            session=session,
            nc=record,
            target=State.CLOSED,
            data={"review_result": "confirmed", "reason": "a known data outage, not a recurrence"},
            actor="rita",
            topic="nc",
        )
        session.commit()
    assert records(db)[0].status == "closed"


def test_a_batch_in_one_transaction_decides_as_one_evaluation_at_a_time(db: Database) -> None:
    """The service applies a whole batch with prefetched state; the outcome (records, their
    occurrences, the log) must be the same as applying the evaluations one by one."""
    target = objective(pending=2, clearing=2)
    plan: list[tuple[str, int, int]] = [  # status, window, revision
        ("breach", 0, 0), ("breach", 1, 0), ("breach", 1, 0), ("pass", 2, 0), ("breach", 3, 0),
        ("pass", 3, 1), ("pass", 4, 0), ("pass", 5, 0), ("breach", 6, 0), ("breach", 7, 0),
        ("pass", 6, 1), ("pass", 7, 1), ("breach", 8, 0), ("breach", 9, 0), ("breach", 10, 0),
    ]  # fmt: skip

    def results(system: str) -> list[EvaluationResult]:
        made = []
        for status, window, revision in plan:
            result = judged(EvaluationStatus(status), window, revision=revision)
            made.append(
                result.model_copy(
                    update={"system_id": system, "id": f"{system}-{window}-{revision}"}
                )
            )
        return made

    for result in results("single"):
        with db.session() as session:
            apply_evaluation(session=session, result=result, objective=target, topic="nc")
    batched = results("batched")
    for start in range(0, len(batched), 4):
        chunk = batched[start : start + 4]
        with db.session() as session:
            apply_batch(session=session, items=[(r, target) for r in chunk], topic="nc")
            session.commit()

    def outcome(system: str) -> tuple[list[tuple[str, int, bool, bool]], list[str]]:
        with db.session() as session:
            ncs = session.exec(
                select(Nonconformity)
                .where(Nonconformity.system_id == system)
                .order_by(col(Nonconformity.raised_at))
            ).all()
            ids = {nc.id for nc in ncs}
            kinds = [
                e.kind
                for e in session.exec(select(LogEntry).order_by(col(LogEntry.seq))).all()
                if e.subject in ids
            ]
        return [(n.status, n.occurrences, n.condition_cleared, n.open) for n in ncs], kinds

    single = outcome("single")
    assert single == outcome("batched")
    assert {"raised", "occurrence", "occurrence_withdrawn", "cleared"} <= set(single[1])


def test_a_batch_sees_silences_and_links_recurrences(db: Database) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    apply(db, judged(EvaluationStatus.BREACH, 0))
    [first] = records(db)
    walk_to_closed(db, first.id)
    with db.session() as session:
        crud.create_silence(
            session=session,
            data={
                "matchers": {"objective_id": "acc"},
                "reason": "r",
                "starts_at": base + timedelta(minutes=2),
                "expires_at": base + timedelta(minutes=4),
            },
            actor="qm",
        )
        session.commit()
    chunk = [judged(EvaluationStatus.BREACH, w) for w in (2, 3, 5)]
    with db.session() as session:
        changes = apply_batch(session=session, items=[(r, objective()) for r in chunk], topic="nc")
        session.commit()
    assert [(c.change, c.evaluation_id) for c in changes] == [
        # the first window ends inside the silence: no change
        (NonconformityChange.RAISED, chunk[1].id),  # its window ends when the silence expires
        (NonconformityChange.OCCURRENCE, chunk[2].id),
    ]
    old, new = records(db)
    assert new.recurrence_of == old.id
    assert new.reference == f"NC-{datetime.now(UTC).year}-0002"
    assert log_kinds(db)[-3:] == ["raise_silenced", "raised", "occurrence"]
    with db.session() as session:
        assert crud.verify_log(session=session).ok
