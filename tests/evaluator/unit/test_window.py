"""One open window's accumulators (``services.evaluator.window``): what a batch adds, the
offsets and model versions it remembers, needs that start late, and its JSON state."""

from __future__ import annotations

import numpy as np

from services.evaluator.judge import measure_window
from services.evaluator.plan import WindowPlan
from services.evaluator.window import MAX_MODEL_VERSIONS, WindowState
from shared.contracts import Objective

from ..conftest import objective, system
from .events import columns, every_row, prediction

MISSING_X3 = objective("missing_rate", 0.1, "lt", parameters={"feature": "x3"})
VOLUME = objective("volume", 1)


def plan_for(*objectives: Objective) -> WindowPlan:
    return WindowPlan.build(system(list(objectives)), 60, list(objectives), None)


def test_a_window_ends_one_size_after_it_starts() -> None:
    window = WindowState(start=1_800_000_060, size=60, reference_hash=None)
    assert window.end == 1_800_000_120


def test_only_the_chosen_rows_of_a_batch_are_added() -> None:
    plan = plan_for(MISSING_X3)
    values = [1.0, None, None, 4.0, None, 6.0]
    batch = columns([prediction(i, features={"x3": v}) for i, v in enumerate(values)], 100)
    window = WindowState(start=0, size=60, reference_hash=None)
    window.update(plan, batch, np.array([0, 1, 3], dtype=np.intp), 2, batch.offsets)
    assert window.n == 3
    assert measure_window(MISSING_X3, plan, window, None).value == 1 / 3
    assert window.offsets == {2: [100, 103]}


def test_offsets_span_every_batch_of_each_partition() -> None:
    plan = plan_for(VOLUME)
    window = WindowState(start=0, size=60, reference_hash=None)
    later = columns([prediction(i) for i in range(3)], 50)
    window.update(plan, later, every_row(later), 0, later.offsets)
    earlier = columns([prediction(i) for i in range(2)], 20)
    window.update(plan, earlier, every_row(earlier), 0, earlier.offsets)
    other = columns([prediction(0)], 7)
    window.update(plan, other, every_row(other), 1, other.offsets)
    assert window.offsets == {0: [20, 52], 1: [7, 7]}
    assert window.n == 6


def test_an_empty_selection_changes_nothing() -> None:
    plan = plan_for(VOLUME)
    batch = columns([prediction(0)])
    window = WindowState(start=0, size=60, reference_hash=None)
    window.update(plan, batch, np.array([], dtype=np.intp), 0, batch.offsets)
    assert (window.n, window.offsets, window.accumulators, window.model_versions) == (0, {}, {}, {})


def test_the_windows_model_version_is_its_most_frequent_one() -> None:
    window = WindowState(start=0, size=60, reference_hash=None)
    assert window.model_version() == ""
    versions = ["v1", "v2", "v2", "v1", "v3", "v2"]
    batch = columns([prediction(i, model_version=v) for i, v in enumerate(versions)])
    window.update(plan_for(VOLUME), batch, every_row(batch), 0, batch.offsets)
    assert window.model_versions == {"v1": 2, "v2": 3, "v3": 1}
    assert window.model_version() == "v2"


def test_a_tie_between_model_versions_goes_to_the_greatest_name() -> None:
    window = WindowState(start=0, size=60, reference_hash=None)
    batch = columns(
        [prediction(i, model_version=v) for i, v in enumerate(["b", "c", "a", "c", "b"])]
    )
    window.update(plan_for(VOLUME), batch, every_row(batch), 0, batch.offsets)
    assert window.model_version() == "c"


def test_model_versions_are_bounded_but_known_ones_keep_counting() -> None:
    plan = plan_for(VOLUME)
    window = WindowState(start=0, size=60, reference_hash=None)
    names = [f"v{i:03d}" for i in range(MAX_MODEL_VERSIONS + 6)]
    first = columns([prediction(i, model_version=v) for i, v in enumerate(names)])
    window.update(plan, first, every_row(first), 0, first.offsets)
    assert len(window.model_versions) == MAX_MODEL_VERSIONS
    assert sorted(window.model_versions) == names[:MAX_MODEL_VERSIONS]  # in name order
    again = columns([prediction(i, model_version="v000") for i in range(3)], 100)
    window.update(plan, again, every_row(again), 0, again.offsets)
    assert window.model_versions["v000"] == 4
    assert window.n == MAX_MODEL_VERSIONS + 6 + 3  # every prediction still counted


def test_a_need_that_starts_after_the_window_did_is_marked_partial() -> None:
    window = WindowState(start=0, size=60, reference_hash=None)
    first = columns([prediction(i, features={"x3": 1.0}) for i in range(4)])
    window.update(plan_for(VOLUME), first, every_row(first), 0, first.offsets)
    later = plan_for(VOLUME, MISSING_X3)
    second = columns([prediction(i, features={"x3": None}) for i in range(4, 6)], 4)
    window.update(later, second, every_row(second), 0, second.offsets)
    assert window.partial == {("column", "feature:x3")}
    # the late need saw only its own predictions: both missing
    assert measure_window(MISSING_X3, later, window, None).value == 1.0
    assert window.n == 6


def test_a_window_measures_the_same_after_a_round_trip_through_json() -> None:
    plan = plan_for(VOLUME, MISSING_X3)
    window = WindowState(start=120, size=60, reference_hash="abc")
    values = [None, 2.0, 3.0, None, 5.0]
    batch = columns(
        [prediction(i, features={"x3": v}, model_version=f"m{i % 2}") for i, v in enumerate(values)]
    )
    window.update(plan, batch, every_row(batch), 4, batch.offsets)
    restored = WindowState.from_json(window.to_json())
    assert restored.to_json() == window.to_json()
    assert (restored.start, restored.end, restored.reference_hash) == (120, 180, "abc")
    assert restored.offsets == {4: [0, 4]} and restored.model_version() == "m0"
    assert measure_window(MISSING_X3, plan, restored, None).value == 2 / 5
