"""Outcomes held back until their predictions catch up: in order, whole records, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from services.evaluator.decoding import OutcomeBatch, decode_outcomes
from services.evaluator.pacing import OutcomePacer, Piece
from shared.contracts import OutcomeEvent, encode

T0 = 1_800_000_000.0


def outcomes(times: list[float], offsets: list[int], system: str | list[str] = "s") -> OutcomeBatch:
    values = [
        encode(
            OutcomeEvent(
                event_id=f"o{i}",
                system_id=system if isinstance(system, str) else system[i],
                prediction_id=f"p{i}",
                timestamp=datetime.fromtimestamp(T0 + t, UTC),
                actual=1,
            )
        )
        for i, t in enumerate(times)
    ]
    batch, bad = decode_outcomes(values, np.asarray(offsets, dtype=np.int64))
    assert not bad
    return batch


def applied(pieces: list[Piece]) -> list[tuple[list[int], int | None]]:
    """(offsets of the rows applied, offset advanced to) per piece."""
    return [([] if b is None else b.offsets.tolist(), upto) for b, upto in pieces]


def test_outcomes_ahead_of_the_predictions_wait_in_order_by_whole_records() -> None:
    pacer = OutcomePacer(lead_s=5.0, max_held=1_000)
    # records 10 (two events), 11 (two), 12 (one); the poll's outcomes end at offset 13
    pacer.add(0, outcomes([1, 2, 6, 30, 31], [10, 10, 11, 11, 12]), 13)
    # predictions at T0+0: outcomes up to T0+5 may go; record 11 holds T0+6, so it waits whole
    assert applied(pacer.due(0, {"s": T0}, release=False)) == [([10, 10], None)]
    assert pacer.held(0) == 3 and pacer.systems() == {"s"}
    # predictions reach T0+2: record 11 still waits (T0+30 is in it)
    assert applied(pacer.due(0, {"s": T0 + 2}, release=False)) == []
    # the next poll's outcomes queue behind; predictions at T0+25 let record 11 through
    pacer.add(0, outcomes([32, 33], [13, 14]), 15)
    assert applied(pacer.due(0, {"s": T0 + 25}, release=False)) == [([11, 11], None)]
    # a poll without predictions for the partition: everything held goes, batch by batch,
    # each with the offset its poll's records end at
    assert applied(pacer.due(0, {"s": T0 + 26}, release=True)) == [([12], 13), ([13, 14], 15)]
    assert pacer.held() == 0 and pacer.partitions() == []


def test_a_system_without_predictions_waits_and_others_are_judged_by_their_own() -> None:
    pacer = OutcomePacer(lead_s=0.0, max_held=1_000)
    mixed = outcomes([1, 1, 2, 50], [0, 1, 2, 3], system=["a", "a", "b", "a"])
    pacer.add(3, mixed, 4)
    # b has no prediction yet: its record waits, and so does everything after it
    assert applied(pacer.due(3, {"a": T0 + 10}, release=False)) == [([0, 1], None)]
    assert applied(pacer.due(3, {"a": T0 + 10, "b": T0 + 2}, release=False)) == [([2], None)]
    assert applied(pacer.due(3, {"a": T0 + 50, "b": T0 + 2}, release=False)) == [([3], 4)]


def test_more_than_max_held_lets_the_oldest_through_and_drop_forgets() -> None:
    pacer = OutcomePacer(lead_s=0.0, max_held=3)
    pacer.add(1, outcomes([100, 101, 102, 103, 104], [7, 7, 8, 9, 9]), 10)
    # two over the bound: the oldest two go, as whole records (record 7)
    assert applied(pacer.due(1, {"s": T0}, release=False)) == [([7, 7], None)]
    pacer.add(1, outcomes([105, 106], [10, 11]), 12)
    # five held again: two over, record 8 and then record 9 (whole, so three events)
    assert applied(pacer.due(1, {"s": T0}, release=False)) == [([8, 9, 9], 10)]
    assert pacer.held(1) == 2
    pacer.add(2, None, 40)  # a poll whose outcome records were all dead-lettered
    assert applied(pacer.due(2, {}, release=False)) == [([], 40)]
    pacer.drop([1])
    assert pacer.held() == 0 and pacer.partitions() == []
