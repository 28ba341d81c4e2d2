"""Drift methods against Evidently 0.7 on the same reference and current data."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shared.contracts import FeatureType
from shared.stats import (
    DEFAULT_THRESHOLDS,
    Binning,
    CategoricalAccumulator,
    DriftMethod,
    InsufficientData,
    NumericAccumulator,
    ReferenceProfile,
    column_drift,
    dataset_drift_share,
)
from shared.stats.drift import sturges_edges
from shared.stats.reference import bin_index

from .conftest import EvidentlyDrift

NUMERIC_METHODS = ("psi", "ks", "wasserstein", "jensenshannon", "hellinger")
CATEGORICAL_METHODS = ("psi", "jensenshannon", "hellinger", "chisquare")

RELATIVE_TOLERANCE = 1e-6
"""Where we compute exactly what Evidently computes (complete samples)."""

# scipy.stats.chisquare divides by a zero expectation when the current window has a category the
# reference never had; Evidently (not us) calls it that way and gets p = 0 with this warning.
EVIDENTLY_CHISQUARE_UNSEEN = pytest.mark.filterwarnings(
    "ignore:divide by zero encountered in divide:RuntimeWarning"
)


def _with_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype(object if values.dtype.kind in "OUb" else np.float64)
    out[rng.random(values.size) < share] = None if out.dtype == object else np.nan
    return out


def make_frames(
    rng: np.random.Generator, scenario: str
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Reference and current data; returns (reference, current, numeric, categorical)."""
    n_ref, n_cur = (3_000, 2_500) if scenario != "small" else (400, 60)
    shift = {"stable": 0.0, "shifted": 0.35, "missing": 0.15, "small": 0.5, "skewed": 0.2}[scenario]
    ref_probs, cur_probs = [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]
    cur_letters = ["a", "b", "c"]
    if scenario == "shifted":
        cur_letters, cur_probs = ["a", "b", "c", "d"], [0.35, 0.3, 0.2, 0.15]
    elif scenario in ("missing", "small", "skewed"):
        cur_probs = [0.4, 0.35, 0.25]

    def numeric(n: int, s: float) -> np.ndarray:
        if scenario == "skewed":
            return rng.lognormal(s, 0.9, n)
        return rng.normal(s, 1.0 + s / 2, n)

    reference = pd.DataFrame(
        {
            "x": numeric(n_ref, 0.0),
            "k": rng.integers(0, 6, n_ref).astype(np.float64),
            "c": rng.choice(["a", "b", "c"], n_ref, p=ref_probs),
            "flag": rng.random(n_ref) < 0.3,
        }
    )
    k_high = 7 if scenario == "shifted" else 6
    current = pd.DataFrame(
        {
            "x": numeric(n_cur, shift),
            "k": rng.integers(0, k_high, n_cur).astype(np.float64),
            "c": rng.choice(cur_letters, n_cur, p=cur_probs),
            "flag": rng.random(n_cur) < 0.3 + shift / 2,
        }
    )
    if scenario == "missing":
        for frame in (reference, current):
            frame["x"] = _with_missing(rng, frame["x"].to_numpy(), 0.1)
            frame["c"] = _with_missing(rng, frame["c"].to_numpy(), 0.05)
    return reference, current, ["x", "k"], ["c", "flag"]


def accumulate(
    profile: ReferenceProfile, current: pd.DataFrame
) -> dict[str, NumericAccumulator | CategoricalAccumulator]:
    """Feed the window in uneven batches to two accumulators, checkpoint one, merge them."""
    accumulators: dict[str, NumericAccumulator | CategoricalAccumulator] = {}
    for name, reference in profile.features.items():
        values = current[name].to_numpy()
        halves = np.array_split(values, [values.size // 3])
        parts: list[NumericAccumulator | CategoricalAccumulator] = []
        for half in halves:
            acc: NumericAccumulator | CategoricalAccumulator
            if reference.kind == "numeric":
                acc = NumericAccumulator.for_reference(reference)
            else:
                acc = CategoricalAccumulator.for_reference(reference)
            for batch in np.array_split(half, 5):
                acc.update(batch)
            parts.append(acc)
        first, second = parts
        restored = type(first).from_state(json.loads(json.dumps(first.to_state())))
        restored.merge(second)  # type: ignore[arg-type]
        accumulators[name] = restored
    return accumulators


def build_profile(
    reference: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> ReferenceProfile:
    types = {name: FeatureType.NUMERIC for name in numeric}
    types |= {name: FeatureType.CATEGORICAL for name in categorical}
    return ReferenceProfile.build(reference, types)


def assert_same_value(ours: float, theirs: float, *, rel: float = RELATIVE_TOLERANCE) -> None:
    if theirs == 0.0:
        assert ours == 0.0
    else:
        assert abs(ours - theirs) / abs(theirs) < rel, (ours, theirs)


@pytest.mark.parametrize(
    "scenario",
    [
        "stable",
        pytest.param("shifted", marks=EVIDENTLY_CHISQUARE_UNSEEN),
        "missing",
        "small",
        "skewed",
    ],
)
def test_every_method_matches_evidently_on_complete_samples(
    rng: np.random.Generator, evidently_drift: EvidentlyDrift, scenario: str
) -> None:
    reference, current, numeric, categorical = make_frames(rng, scenario)
    profile = build_profile(reference, numeric, categorical)
    accumulators = accumulate(profile, current)
    cases = [(c, m) for c in numeric for m in NUMERIC_METHODS]
    cases += [(c, m) for c in categorical for m in CATEGORICAL_METHODS]

    theirs = evidently_drift(reference, current, cases, numerical=numeric, categorical=categorical)

    for column, method in cases:
        ours = column_drift(profile.features[column], accumulators[column], method)
        assert not ours.approximate
        assert_same_value(ours.value, theirs[column, method].value)
        assert ours.drifted == theirs[column, method].drifted, (column, method)
        assert ours.threshold == DEFAULT_THRESHOLDS[DriftMethod(method)]


def test_custom_thresholds_decide_as_evidently(
    rng: np.random.Generator, evidently: SimpleNamespace
) -> None:
    reference, current, numeric, categorical = make_frames(rng, "missing")
    profile = build_profile(reference, numeric, categorical)
    accumulators = accumulate(profile, current)
    definition = evidently.DataDefinition(numerical_columns=numeric, categorical_columns=[])
    metrics = [
        evidently.ValueDrift(column="x", method=m, threshold=t)
        for m, t in [("psi", 0.01), ("ks", 0.5), ("wasserstein", 0.05), ("hellinger", 0.2)]
    ]
    snapshot = evidently.Report(metrics, include_tests=True).run(
        evidently.Dataset.from_pandas(current[numeric], data_definition=definition),
        evidently.Dataset.from_pandas(reference[numeric], data_definition=definition),
    )
    for metric, test in zip(metrics, snapshot.dict()["tests"], strict=True):
        ours = column_drift(
            profile.features["x"], accumulators["x"], metric.method, threshold=metric.threshold
        )
        assert ours.drifted == (test["status"] == "FAIL"), metric.method


def test_default_thresholds_are_evidentlys(evidently: SimpleNamespace) -> None:
    stattests = evidently.stattests
    theirs = {
        DriftMethod.PSI: stattests.psi_stat_test,
        DriftMethod.KS: stattests.ks_stat_test,
        DriftMethod.WASSERSTEIN: stattests.wasserstein_stat_test,
        DriftMethod.JENSENSHANNON: stattests.jensenshannon_stat_test,
        DriftMethod.CHISQUARE: stattests.chi_stat_test,
        DriftMethod.HELLINGER: stattests.hellinger_stat_test,
    }
    assert {m: t.default_threshold for m, t in theirs.items()} == dict(DEFAULT_THRESHOLDS)


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "hellinger"])
@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_reference_binning_matches_evidently_on_the_same_bins(
    rng: np.random.Generator, evidently_drift: EvidentlyDrift, method: str, shift: float
) -> None:
    """With the reference's quantile bins, our value is Evidently's on the binned columns."""
    reference = pd.DataFrame({"x": rng.lognormal(0.0, 0.8, 4_000)})
    current = pd.DataFrame({"x": rng.lognormal(shift, 0.8, 3_000)})
    profile = build_profile(reference, ["x"], [])
    (accumulator,) = accumulate(profile, current).values()
    cut_points = profile.features["x"].cut_points  # type: ignore[union-attr]

    def binned(frame: pd.DataFrame) -> pd.DataFrame:
        bins = bin_index(cut_points, frame["x"].to_numpy())
        return pd.DataFrame({"bin": [f"bin{b:02d}" for b in bins]})

    theirs = evidently_drift(
        binned(reference), binned(current), [("bin", method)], categorical=["bin"]
    )["bin", method]
    ours = column_drift(profile.features["x"], accumulator, method, binning=Binning.REFERENCE)
    assert not ours.approximate
    assert_same_value(ours.value, theirs.value)
    assert ours.drifted == theirs.drifted


REFERENCE_BINNING_TOLERANCE = (0.02, 0.10)
"""|ours - evidently| <= 0.02 + 10 % of Evidently's value, for normal data.

Reference binning uses 10 quantile bins of the reference; Evidently uses Sturges equal-width
bins over the combined data (about 14 here). On normally distributed data the two agree to
this tolerance; on skewed data they do not (for a lognormal shifted by 1 we measured a PSI of
1.33 on quantile bins against Evidently's 0.64), which is why Evidently binning is the default.
"""


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "hellinger"])
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.3, 1.0])
def test_reference_binning_is_close_to_evidently_on_normal_data(
    rng: np.random.Generator, evidently_drift: EvidentlyDrift, method: str, shift: float
) -> None:
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 4_000)})
    current = pd.DataFrame({"x": rng.normal(shift, 1.0, 3_000)})
    profile = build_profile(reference, ["x"], [])
    (accumulator,) = accumulate(profile, current).values()

    theirs = evidently_drift(reference, current, [("x", method)], numerical=["x"])["x", method]
    ours = column_drift(profile.features["x"], accumulator, method, binning="reference")

    absolute, relative = REFERENCE_BINNING_TOLERANCE
    assert abs(ours.value - theirs.value) <= absolute + relative * theirs.value
    if shift in (0.0, 1.0):  # far from the threshold both must decide alike
        assert ours.drifted == theirs.drifted


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_large_windows_and_references_are_exact(
    rng: np.random.Generator, evidently_drift: EvidentlyDrift, shift: float
) -> None:
    """60,000 reference rows and 80,000 window values (the old 5,000-value samples were
    estimates here): the reference's values and the window's are all kept."""
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 60_000)})
    current = pd.DataFrame({"x": rng.normal(shift, 1.0, 80_000)})
    profile = build_profile(reference, ["x"], [])
    (accumulator,) = accumulate(profile, current).values()
    cases = [("x", m) for m in NUMERIC_METHODS]

    theirs = evidently_drift(reference, current, cases, numerical=["x"])

    for _, method in cases:
        ours = column_drift(profile.features["x"], accumulator, method)
        assert not ours.approximate
        assert ours.detail.startswith("exact: reference 60000 values exact, window 80000")
        assert ours.drifted == theirs["x", method].drifted, method
        assert abs(ours.value - theirs["x", method].value) <= 1e-9


def test_low_cardinality_column_with_many_new_values_matches_evidently(
    rng: np.random.Generator, evidently_drift: EvidentlyDrift
) -> None:
    """Reference with 4 values: Evidently bins per value, new values of the window included."""
    reference = pd.DataFrame({"x": rng.integers(0, 4, 2_000).astype(np.float64)})
    current = pd.DataFrame({"x": np.round(rng.normal(2.0, 2.0, 1_500), 1)})
    profile = build_profile(reference, ["x"], [])
    (accumulator,) = accumulate(profile, current).values()
    assert isinstance(accumulator, NumericAccumulator)
    cases = [("x", m) for m in ("psi", "jensenshannon")]

    theirs = evidently_drift(reference, current, cases, numerical=["x"])

    for _, method in cases:
        ours = column_drift(profile.features["x"], accumulator, method)
        assert_same_value(ours.value, theirs["x", method].value)


@pytest.mark.parametrize("method", ["wasserstein", "psi", "jensenshannon", "hellinger"])
def test_dataset_drift_share_matches_evidently(
    rng: np.random.Generator,
    evidently_drift_share: object,
    method: str,
) -> None:
    n_ref, n_cur = 2_000, 1_500
    shifts = {"a": 0.0, "b": 0.05, "c": 0.6, "d": 1.0, "e": 0.0}
    reference = pd.DataFrame({c: rng.normal(0, 1, n_ref) for c in shifts})
    current = pd.DataFrame({c: rng.normal(s, 1, n_cur) for c, s in shifts.items()})
    profile = build_profile(reference, list(shifts), [])
    accumulators = accumulate(profile, current)

    ours = dataset_drift_share(
        [column_drift(profile.features[c], accumulators[c], method) for c in shifts]
    )
    share, drifted = evidently_drift_share(  # type: ignore[operator]
        reference, current, method=method, numerical=list(shifts)
    )
    assert ours.share == share
    assert ours.drifted == drifted
    assert ours.n_columns == len(shifts)


def test_dataset_drifts_at_half_of_the_columns() -> None:
    results = [
        column_drift_result(True),
        column_drift_result(False),
    ]
    assert dataset_drift_share(results).drifted
    assert not dataset_drift_share(results[1:]).drifted
    with pytest.raises(InsufficientData):
        dataset_drift_share([])


def column_drift_result(drifted: bool) -> object:
    from shared.stats import DriftResult

    return DriftResult(DriftMethod.PSI, 0.5 if drifted else 0.0, drifted, 0.1)


@pytest.mark.parametrize(
    "data",
    [
        np.arange(1_024, dtype=np.float64),
        np.full(17, 3.5),
        np.random.default_rng(3).normal(size=999),
        np.random.default_rng(4).lognormal(size=12_345),
    ],
)
def test_sturges_edges_are_numpys(data: np.ndarray) -> None:
    expected = np.histogram_bin_edges(data, bins="sturges")
    np.testing.assert_array_equal(
        sturges_edges(float(data.min()), float(data.max()), data.size), expected
    )


def test_methods_refuse_the_wrong_column_type(rng: np.random.Generator) -> None:
    reference, current, numeric, categorical = make_frames(rng, "stable")
    profile = build_profile(reference, numeric, categorical)
    accumulators = accumulate(profile, current)
    with pytest.raises(ValueError, match="categorical"):
        column_drift(profile.features["c"], accumulators["c"], "ks")
    with pytest.raises(ValueError, match="numeric"):
        column_drift(profile.features["x"], accumulators["x"], "chisquare")
    with pytest.raises(TypeError):
        column_drift(profile.features["x"], accumulators["c"], "psi")


def test_an_empty_window_has_insufficient_data(rng: np.random.Generator) -> None:
    reference, _, numeric, categorical = make_frames(rng, "stable")
    profile = build_profile(reference, numeric, categorical)
    empty = NumericAccumulator.for_reference(profile.features["x"])  # type: ignore[arg-type]
    empty.update([math.nan, None])
    with pytest.raises(InsufficientData):
        column_drift(profile.features["x"], empty, "wasserstein")


def test_default_method_is_evidentlys_for_large_references(rng: np.random.Generator) -> None:
    reference, current, numeric, categorical = make_frames(rng, "stable")
    profile = build_profile(reference, numeric, categorical)
    accumulators = accumulate(profile, current)
    assert column_drift(profile.features["x"], accumulators["x"]).method == "wasserstein"
    assert column_drift(profile.features["c"], accumulators["c"]).method == "jensenshannon"
