"""Event-time window arithmetic: which window holds a time, the watermarks, label times, the
label clock and revision cut-offs (``services.evaluator.windows``)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.evaluator.windows import (
    label_clock,
    label_times,
    revision_index,
    running_watermark,
    to_datetime,
    window_starts,
)

T0 = 1_800_000_000.0
"""2027-01-15T08:00:00Z: a multiple of 60 and 3600, not of a day or of 7 seconds."""


def starts(times: list[float], size: int) -> list[int]:
    return [int(s) for s in window_starts(np.asarray(times, dtype=np.float64), size)]


def test_a_window_is_half_open_so_an_event_on_a_boundary_opens_the_next_one() -> None:
    assert starts([T0, T0 + 59.999999, T0 + 60.0, T0 + 60.000001], 60) == [
        1_800_000_000,
        1_800_000_000,
        1_800_000_060,
        1_800_000_060,
    ]


def test_windows_are_aligned_to_the_epoch_not_to_the_first_event() -> None:
    # 1_800_000_000 = 20_833 days + 28_800 s: a day window starts at 20_833 * 86_400
    assert starts([T0, T0 + 57_599.0, T0 + 57_600.0], 86_400) == [
        1_799_971_200,
        1_799_971_200,
        1_800_057_600,
    ]
    # a 7-second window: 1_800_000_000 = 7 * 257_142_857 + 1
    assert starts([T0, T0 - 1.0, T0 + 6.0], 7) == [1_799_999_999, 1_799_999_999, 1_800_000_006]


def test_times_before_the_epoch_fall_into_the_window_below_them() -> None:
    # floor, not truncation towards zero: -0.5 s is in [-60, 0), -60 s starts that window
    assert starts([-0.5, -60.0, -60.5, 0.0], 60) == [-60, -60, -120, 0]


def test_a_time_a_microsecond_before_a_boundary_stays_in_the_earlier_window() -> None:
    # float64 division must not round k * size - 1 us up to k
    rng = np.random.default_rng(7)
    for size in (1, 60, 3600, 86_400, 604_800):
        k = rng.integers(1, 4_000_000_000 // size, 10_000)
        ts = (k * size).astype(np.float64) - 1e-6
        found = window_starts(ts, size)
        assert np.array_equal(found, (k - 1) * size)


def test_the_far_future_end_of_contract_time_still_has_an_integer_window() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    (start,) = starts([last], 3600)
    assert start == 253_402_297_200  # 9999-12-31T23:00:00Z
    assert to_datetime(start) == datetime(9999, 12, 31, 23, tzinfo=UTC)


def test_the_watermark_each_record_saw_is_the_newest_time_before_it() -> None:
    seen, after = running_watermark(None, np.array([3.0, 1.0, 5.0, 2.0]))
    assert seen.tolist() == [-np.inf, 3.0, 3.0, 5.0]
    assert after == 5.0


def test_a_watermark_never_goes_back_across_batches() -> None:
    seen, after = running_watermark(10.0, np.array([3.0, 1.0, 11.0, 4.0]))
    assert seen.tolist() == [10.0, 10.0, 10.0, 11.0]
    assert after == 11.0


def test_an_empty_batch_leaves_the_watermark_as_it_was() -> None:
    seen, after = running_watermark(None, np.array([], dtype=np.float64))
    assert seen.size == 0 and after is None
    seen, after = running_watermark(7.0, np.array([], dtype=np.float64))
    assert seen.size == 0 and after == 7.0


def test_splitting_a_batch_does_not_change_the_watermarks_records_see() -> None:
    ts = np.random.default_rng(3).uniform(0, 1000, 500)
    whole, end = running_watermark(None, ts)
    first, middle = running_watermark(None, ts[:123])
    second, last = running_watermark(middle, ts[123:])
    assert np.array_equal(np.concatenate([first, second]), whole)
    assert last == end == ts.max()


def test_an_outcome_within_the_lateness_keeps_its_own_time() -> None:
    # watermark 100 before the 2nd outcome; lateness 5: 96 >= 95 keeps 96
    assert label_times(None, np.array([100.0, 96.0, 95.0]), 5.0).tolist() == [100.0, 96.0, 95.0]


def test_an_outcome_later_than_the_lateness_counts_from_the_outcome_watermark() -> None:
    times = label_times(None, np.array([100.0, 90.0, 200.0, 150.0, 201.0]), 5.0)
    assert times.tolist() == [100.0, 95.0, 200.0, 195.0, 201.0]


def test_label_times_continue_from_the_watermark_of_earlier_batches() -> None:
    assert label_times(300.0, np.array([10.0, 299.0]), 60.0).tolist() == [240.0, 299.0]


def test_no_label_clock_before_the_first_prediction() -> None:
    assert label_clock(None, 500.0, lateness=5.0, label_wait=300.0) is None
    assert label_clock(None, None, lateness=5.0, label_wait=300.0) is None


def test_the_label_clock_follows_the_slower_stream_minus_the_lateness() -> None:
    # outcomes behind predictions (within the wait): the outcomes bound it
    assert label_clock(1000.0, 900.0, lateness=5.0, label_wait=300.0) == 895.0
    # outcomes ahead of predictions: the predictions bound it
    assert label_clock(1000.0, 5000.0, lateness=5.0, label_wait=300.0) == 995.0


def test_silent_outcomes_hold_the_label_clock_back_only_by_the_label_wait() -> None:
    assert label_clock(1000.0, None, lateness=5.0, label_wait=300.0) == 695.0
    assert label_clock(1000.0, 100.0, lateness=5.0, label_wait=300.0) == 695.0
    # exactly label_wait behind: both rules agree
    assert label_clock(1000.0, 700.0, lateness=5.0, label_wait=300.0) == 695.0


@pytest.mark.parametrize(
    ("label_time", "expected"),
    [
        (-1e9, 0),  # long before the window: revision 0
        (119.999, 0),  # just before the end
        (120.0, 1),  # exactly at the end: the first cut-off c_0 = end is not "before" it
        (149.999, 1),
        (150.0, 2),  # exactly on c_1 = end + interval
        (150.001, 2),
        (120.0 + 10 * 30.0, 11),
    ],
)
def test_a_label_belongs_to_the_first_cut_off_after_it(label_time: float, expected: int) -> None:
    assert revision_index(label_time, end=120.0, interval=30.0) == expected


def test_revision_cut_offs_agree_with_a_plain_search() -> None:
    end, interval = 1_800_000_060.0, 45.0
    cut_offs = end + interval * np.arange(0, 400)
    for label_time in np.random.default_rng(11).uniform(end - 100, end + 17_000, 2_000):
        # first k whose cut-off c_k is after the label time (strictly)
        expected = int(np.flatnonzero(cut_offs > label_time)[0])
        assert revision_index(float(label_time), end, interval) == expected


def test_epoch_seconds_become_aware_utc_datetimes() -> None:
    assert to_datetime(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert to_datetime(-1.5) == datetime(1969, 12, 31, 23, 59, 58, 500_000, tzinfo=UTC)
    assert to_datetime(T0 + 0.25) == datetime(2027, 1, 15, 8, 0, 0, 250_000, tzinfo=UTC)
    assert to_datetime(T0).tzinfo is UTC
