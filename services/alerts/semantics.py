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

from shared.contracts import EvaluationStatus

__all__ = ["AlertCounters", "Decision", "decide", "fingerprint"]


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
