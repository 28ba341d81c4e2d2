"""What a drift evaluation says about how it was computed: exact with the sizes, or approximate
with the bound (and ``approximate: true`` on the result)."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.evaluator.judge import judge, measure_window
from services.evaluator.plan import WindowPlan
from services.evaluator.window import WindowState
from shared.contracts import FeatureSpec, FeatureType
from shared.stats import ReferenceProfile
from shared.stats.distribution import EXACT_WINDOW_VALUES

from .conftest import objective, system


class _Batch:
    """The two numeric columns of a window, as the plan's accumulators read them."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.size = x.size
        self._columns = {"feature:x": x, "feature:y": y}

    def column(self, name: str, *, numeric: bool) -> np.ndarray:
        return self._columns[name]

    def latency(self) -> np.ndarray:
        return np.full(self.size, np.nan)

    def model_versions(self) -> list[str]:
        return ["m1"] * self.size


def _window(n: int, seed: int = 2) -> tuple[WindowPlan, WindowState, ReferenceProfile, list[Any]]:
    rng = np.random.default_rng(seed)
    profile = ReferenceProfile.build(
        {"x": rng.normal(size=30_000), "y": np.round(rng.normal(size=30_000), 1)},
        {"x": FeatureType.NUMERIC, "y": FeatureType.NUMERIC},
    )
    objectives = [
        objective("wasserstein", 0.1, "lt", id="w", parameters={"feature": "x"}),
        objective("ks", 0.05, "gt", id="ks", parameters={"feature": "x"}),
        objective("psi", 0.1, "lt", id="psi-y", parameters={"feature": "y"}),
        objective("dataset_drift_share", 0.5, "lt", id="share"),
    ]
    snapshot = system(
        objectives,
        reference=profile,
        features=[FeatureSpec(name=n, type=FeatureType.NUMERIC) for n in ("x", "y")],
    )
    plan = WindowPlan.build(snapshot, 60, objectives, profile)
    window = WindowState(start=0, size=60, reference_hash=profile.content_hash)
    for part in np.array_split(np.arange(n), max(n // 40_000, 1)):
        batch = _Batch(rng.normal(0.02, 1.0, part.size), np.round(rng.normal(size=part.size), 1))
        rows = np.arange(part.size)
        window.update(plan, batch, rows, 0, rows)  # type: ignore[arg-type]
    return plan, window, profile, objectives


def test_a_window_within_the_exact_bound_says_exact_and_its_sizes() -> None:
    plan, window, profile, objectives = _window(5_000)
    for o in objectives:
        verdict = judge(o, lambda o=o: measure_window(o, plan, window, profile))
        assert not verdict.approximate, o.id
        if o.id != "share":
            assert verdict.detail is not None
            assert verdict.detail.startswith("exact: reference 30000 values exact, window 5000")
    share = judge(objectives[-1], lambda: measure_window(objectives[-1], plan, window, profile))
    assert share.detail is not None and "every column compared exactly" in share.detail


def test_a_binned_window_is_approximate_with_its_bound() -> None:
    n = EXACT_WINDOW_VALUES + 60_000
    plan, window, profile, objectives = _window(n)
    by_id = {
        o.id: judge(o, lambda o=o: measure_window(o, plan, window, profile)) for o in objectives
    }
    for oid in ("w", "ks"):
        verdict = by_id[oid]
        assert verdict.approximate, oid
        assert verdict.detail is not None
        assert verdict.detail.startswith("approximate, |error| <= "), verdict.detail
        assert f"window {n} values in " in verdict.detail
    # the rounded column has 80-odd distinct values: still exact however long the window
    assert not by_id["psi-y"].approximate
    assert by_id["psi-y"].detail is not None and by_id["psi-y"].detail.startswith("exact: ")
    share = by_id["share"]
    assert share.approximate
    assert share.detail is not None and "1 compared approximately (largest bound" in share.detail
