"""Alert semantics: pending, hysteresis and fingerprints (pure)."""

from __future__ import annotations

from services.alerts.semantics import AlertCounters, Decision, decide, fingerprint
from shared.contracts import EvaluationStatus

B, P, N = EvaluationStatus.BREACH, EvaluationStatus.PASS, EvaluationStatus.INSUFFICIENT_DATA


def run(statuses: list[EvaluationStatus], *, pending: int, clearing: int) -> list[Decision]:
    """Feed a sequence of window statuses through the semantics, tracking the open record."""
    counters = AlertCounters()
    open_nc = cleared = False
    out = []
    for status in statuses:
        decision = decide(
            counters,
            status,
            open_nonconformity=open_nc,
            condition_cleared=cleared,
            pending_windows=pending,
            clearing_windows=clearing,
        )
        if decision is Decision.RAISE:
            open_nc, cleared = True, False
        elif decision is Decision.OCCURRENCE:
            cleared = False
        elif decision is Decision.CLEAR:
            cleared = True
        out.append(decision)
    return out


def test_raises_on_first_breach_by_default() -> None:
    assert run([P, B], pending=1, clearing=1) == [Decision.NONE, Decision.RAISE]


def test_pending_needs_consecutive_breaches() -> None:
    assert run([B, P, B, B, B], pending=3, clearing=1) == [
        Decision.NONE,
        Decision.NONE,
        Decision.NONE,
        Decision.NONE,
        Decision.RAISE,
    ]


def test_repeat_breach_is_an_occurrence_not_a_twin() -> None:
    assert run([B, B, B], pending=1, clearing=1) == [
        Decision.RAISE,
        Decision.OCCURRENCE,
        Decision.OCCURRENCE,
    ]


def test_clearing_needs_consecutive_passes_and_happens_once() -> None:
    assert run([B, P, B, P, P, P], pending=1, clearing=2) == [
        Decision.RAISE,
        Decision.NONE,
        Decision.OCCURRENCE,
        Decision.NONE,
        Decision.CLEAR,
        Decision.NONE,
    ]


def test_insufficient_data_neither_raises_nor_clears() -> None:
    assert run([N, N, B, N, P], pending=1, clearing=1) == [
        Decision.NONE,
        Decision.NONE,
        Decision.RAISE,
        Decision.NONE,
        Decision.CLEAR,
    ]


def test_fingerprint_ignores_parameter_order_and_separates_segments() -> None:
    a = fingerprint("s", "o", {"feature": "age", "segment": "north"})
    b = fingerprint("s", "o", {"segment": "north", "feature": "age"})
    c = fingerprint("s", "o", {"feature": "age", "segment": "south"})
    assert a == b
    assert a != c
    assert fingerprint("s", "o", {}) != fingerprint("s2", "o", {})
