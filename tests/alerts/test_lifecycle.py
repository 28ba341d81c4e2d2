"""The nonconformity lifecycle, its guards, revisions, inhibition, silences and the log's hash
chain as pure logic (no database, no Kafka)."""

from __future__ import annotations

import hashlib
import json

import pytest

from services.alerts.semantics import (
    GENESIS,
    ORDER,
    TRANSITIONS,
    RecordFacts,
    RevisionEffect,
    State,
    TransitionError,
    canonical_entry,
    chain_hash,
    check_transition,
    inhibits,
    revision_effect,
    silence_matches,
)
from shared.contracts import EvaluationStatus

B, P, N = EvaluationStatus.BREACH, EvaluationStatus.PASS, EvaluationStatus.INSUFFICIENT_DATA

READY = RecordFacts(
    state=State.RAISED,
    containment=True,
    root_cause=True,
    actions_open=0,
    actions_live=1,
    action_owners=frozenset({"olivia"}),
    review_result="confirmed",
    reviewer="rita",
)
"""A record whose every step's fields are filled: only the state decides."""


def at(state: State, **changes: object) -> RecordFacts:
    fields = {f: getattr(READY, f) for f in RecordFacts.__slots__}
    fields.update(state=state, **changes)
    return RecordFacts(**fields)


LEGAL = [(source, target) for source, targets in TRANSITIONS.items() for target in targets]


@pytest.mark.parametrize("source,target", LEGAL, ids=lambda s: s.value)
def test_every_legal_transition_passes_with_its_fields(source: State, target: State) -> None:
    review = (
        "not_effective"
        if target is State.CAUSE_ANALYSED and source is State.EFFECTIVENESS_REVIEW
        else "confirmed"
    )
    check_transition(at(source, review_result=review), target)


ILLEGAL = [
    (source, target)
    for source in State
    for target in State
    if source not in TRANSITIONS or target not in TRANSITIONS[source]
]


@pytest.mark.parametrize("source,target", ILLEGAL, ids=lambda s: s.value)
def test_every_illegal_transition_is_refused_naming_the_step(source: State, target: State) -> None:
    with pytest.raises(TransitionError) as refused:
        check_transition(at(source), target)
    message = str(refused.value)
    if source in (State.REJECTED, State.CLOSED, State.WITHDRAWN):
        assert f"is {source.value}" in message
    elif source in ORDER and target in ORDER and ORDER.index(target) > ORDER.index(source):
        missing = ORDER[ORDER.index(source) + 1]
        assert f"must be {missing.value} first" in message
    else:
        assert "allowed next:" in message


def test_raised_to_closed_names_triage_as_the_missing_step() -> None:
    with pytest.raises(TransitionError, match="must be triaged first"):
        check_transition(at(State.RAISED), State.CLOSED)


@pytest.mark.parametrize(
    "source,target,missing,message",
    [
        (State.TRIAGED, State.CONTAINED, {"containment": False}, "containment"),
        (State.CONTAINED, State.CAUSE_ANALYSED, {"root_cause": False}, "root cause"),
        (State.CAUSE_ANALYSED, State.ACTION_PLANNED, {"actions_live": 0}, "corrective action"),
        (
            State.ACTION_PLANNED,
            State.ACTION_IMPLEMENTED,
            {"actions_open": 2},
            "2 corrective action",
        ),
        (State.ACTION_IMPLEMENTED, State.EFFECTIVENESS_REVIEW, {"reviewer": None}, "reviewer"),
        (
            State.ACTION_IMPLEMENTED,
            State.EFFECTIVENESS_REVIEW,
            {"reviewer": "olivia"},
            "owns a corrective action",
        ),
        (State.EFFECTIVENESS_REVIEW, State.CLOSED, {"review_result": None}, "effectiveness"),
        (
            State.EFFECTIVENESS_REVIEW,
            State.CLOSED,
            {"review_result": "inconclusive"},
            "confirmed",
        ),
        (
            State.EFFECTIVENESS_REVIEW,
            State.CAUSE_ANALYSED,
            {"review_result": "confirmed"},
            "not_effective",
        ),
        (State.EFFECTIVENESS_REVIEW, State.CLOSED, {"evidence_breached": True}, "reason"),
    ],
)
def test_guards_name_what_is_missing(
    source: State, target: State, missing: dict[str, object], message: str
) -> None:
    with pytest.raises(TransitionError, match=message):
        check_transition(at(source, **missing), target)


def test_a_breach_after_the_actions_needs_a_reason_to_close() -> None:
    check_transition(
        at(State.EFFECTIVENESS_REVIEW, evidence_breached=True), State.CLOSED, reason="seasonal"
    )


@pytest.mark.parametrize(
    "applied,status,revision,effect",
    [
        (B, B, 1, RevisionEffect.IGNORE),  # a replay of the applied revision
        (B, P, 0, RevisionEffect.IGNORE),  # an older revision never wins
        (B, B, 2, RevisionEffect.SAME),
        (P, B, 2, RevisionEffect.NOW_BREACH),
        (N, B, 2, RevisionEffect.NOW_BREACH),
        (B, P, 2, RevisionEffect.NO_LONGER_BREACH),
        (B, N, 2, RevisionEffect.NO_LONGER_BREACH),
        (P, N, 2, RevisionEffect.SAME),
    ],
)
def test_revision_effects(
    applied: EvaluationStatus, status: EvaluationStatus, revision: int, effect: RevisionEffect
) -> None:
    assert (
        revision_effect(
            applied_revision=1, applied_status=applied, revision=revision, status=status
        )
        if revision
        else revision_effect(applied_revision=1, applied_status=applied, revision=1, status=status)
    ) is effect


def test_inhibition_comes_from_missing_data_and_data_quality_breaches() -> None:
    assert inhibits(N, "accuracy")
    assert inhibits(B, "missing_rate")
    assert not inhibits(P, "missing_rate")
    assert not inhibits(B, "psi")  # drift is not broken input


def test_silence_matchers_must_all_match() -> None:
    labels = {"system_id": "s", "objective_id": "o", "metric": "accuracy", "severity": "major"}
    assert silence_matches({"system_id": "s"}, labels)
    assert silence_matches({"system_id": "s", "severity": "major"}, labels)
    assert not silence_matches({"system_id": "s", "severity": "minor"}, labels)
    assert not silence_matches({}, labels)


def test_the_chain_is_sha256_over_the_previous_hash_and_sorted_compact_json() -> None:
    canonical = canonical_entry(
        seq=1,
        at="2026-01-01T00:00:00.000000",
        actor="qm",
        kind="transition",
        subject="nc1",
        before={"status": "raised"},
        after={"status": "triaged", "b": 1.5},
    )
    independent = json.dumps(
        {
            "seq": 1,
            "at": "2026-01-01T00:00:00.000000",
            "actor": "qm",
            "kind": "transition",
            "subject": "nc1",
            "before": {"status": "raised"},
            "after": {"status": "triaged", "b": 1.5},
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert canonical == independent
    first = chain_hash(GENESIS, canonical)
    assert first == hashlib.sha256(GENESIS.encode() + independent).hexdigest()
    assert chain_hash(first, canonical) != first


@pytest.mark.parametrize("target", [State.ACTION_PLANNED, State.ACTION_IMPLEMENTED])
def test_a_reopened_record_needs_an_action_of_its_new_plan(target: State) -> None:
    """After a not-effective review (plan 2), the first plan's actions are not counted: with
    none in the new plan the guard names the missing new action."""
    source = State.CAUSE_ANALYSED if target is State.ACTION_PLANNED else State.ACTION_PLANNED
    with pytest.raises(TransitionError, match="new corrective action for action plan 2"):
        check_transition(at(source, actions_live=0, action_plan=2), target)
    check_transition(at(source, actions_live=1, action_plan=2), target)
