"""Which event times ingest takes: not too far in the future, not older than the system can
still use (pure).

An event more than ``max_future_skew_s`` ahead of ingest's clock is refused (one event dated
2200 would hold a system's windows open for ever), and so is one older than the system's label
horizon plus ``backfill_allowance_s`` (its window was judged and its labels written off long
ago). Outcomes follow the same rule: one may arrive long after its prediction, up to the label
horizon, which the allowance already covers. The reason names the limit and its setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import SystemSnapshot

__all__ = ["EventTimeLimits"]


def _seconds(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class EventTimeLimits:
    """The limits as of ``now`` (seconds since the epoch), fixed once per request."""

    now: float
    max_future_skew_s: float
    backfill_allowance_s: float

    def window(self, system: SystemSnapshot) -> tuple[float, float]:
        """The earliest and latest event time (epoch seconds) accepted for ``system``."""
        oldest = system.label_horizon_seconds + self.backfill_allowance_s
        return self.now - oldest, self.now + self.max_future_skew_s

    def problem(self, when: float, system: SystemSnapshot) -> str | None:
        """Why an event time ``when`` (epoch seconds) is refused, or None."""
        earliest, latest = self.window(system)
        if when > latest:
            skew = _seconds(self.max_future_skew_s)
            return f"more than {skew} s in the future (max_future_skew_s)"
        if when < earliest:
            horizon = system.label_horizon_seconds
            allowance = self.backfill_allowance_s
            return (
                f"older than {_seconds(horizon + allowance)} s (label_horizon_seconds "
                f"{horizon} s + backfill_allowance_s {_seconds(allowance)} s)"
            )
        return None
