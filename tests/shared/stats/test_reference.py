"""The reference profile keeps what np.quantile and value counts say, and hashes stably."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.contracts import FeatureType
from shared.stats import (
    CategoricalReference,
    InsufficientData,
    NumericReference,
    ReferenceProfile,
)
from shared.stats.reference import bin_index, profile_numeric


@pytest.fixture
def reference(rng: np.random.Generator) -> pd.DataFrame:
    n = 12_000
    x = rng.gamma(2.0, 3.0, n)
    x[rng.random(n) < 0.02] = np.nan
    colour = rng.choice(["red", "green", "blue"], n, p=[0.6, 0.3, 0.1]).astype(object)
    colour[rng.random(n) < 0.01] = None
    return pd.DataFrame(
        {
            "x": x,
            "age": rng.integers(18, 90, n),
            "colour": colour,
            "member": rng.random(n) < 0.25,
            "prediction": rng.choice([0, 1], n),
            "score_1": rng.random(n),
        }
    )


TYPES = {
    "x": FeatureType.NUMERIC,
    "age": FeatureType.NUMERIC,
    "colour": FeatureType.CATEGORICAL,
    "member": FeatureType.BOOLEAN,
}


def build(frame: pd.DataFrame) -> ReferenceProfile:
    return ReferenceProfile.build(
        frame, TYPES, prediction="prediction", score_columns={"1": "score_1"}
    )


def test_numeric_bins_are_deduplicated_quantiles(reference: pd.DataFrame) -> None:
    profile = build(reference)
    x = reference["x"].dropna().to_numpy()
    feature = profile.features["x"]
    assert isinstance(feature, NumericReference)

    expected_edges = np.unique(np.quantile(x, np.linspace(0, 1, 11)))
    np.testing.assert_array_equal(feature.edges, expected_edges)
    intervals = pd.cut(x, bins=[-np.inf, *expected_edges[1:-1], np.inf], right=False)
    expected_counts = pd.Series(intervals).value_counts(sort=False).to_numpy()
    np.testing.assert_array_equal(feature.counts, expected_counts)
    assert (feature.n, feature.n_missing) == (x.size, reference["x"].isna().sum())
    assert feature.mean == pytest.approx(x.mean(), rel=1e-12)
    assert feature.std == pytest.approx(x.std(), rel=1e-12)
    assert (feature.min, feature.max) == (x.min(), x.max())
    assert feature.n_unique == np.unique(x).size
    assert feature.distinct_values is None


def test_ties_collapse_bins_and_values_beyond_the_edges_land_in_the_outer_bins() -> None:
    values = np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20)
    feature = profile_numeric(values)
    quantiles = np.quantile(values, np.linspace(0, 1, 11))
    assert len(set(quantiles.tolist())) < 11
    assert feature.edges == tuple(np.unique(quantiles))
    cut_points = feature.edges[1:-1]
    expected = [
        np.count_nonzero((values >= low) & (values < high))
        for low, high in zip((-np.inf, *cut_points), (*cut_points, np.inf), strict=True)
    ]
    assert list(feature.counts) == expected
    assert sum(feature.counts) == values.size
    assert feature.distinct_values == (0.0, 1.0, 2.0)
    assert feature.distinct_counts == (50, 30, 20)
    beyond = bin_index(feature.cut_points, np.array([-5.0, 99.0]))
    assert beyond.tolist() == [0, len(feature.counts) - 1]


def test_categorical_and_boolean_frequencies_are_value_counts(reference: pd.DataFrame) -> None:
    profile = build(reference)
    colour = profile.features["colour"]
    member = profile.features["member"]
    prediction = profile.prediction
    assert isinstance(colour, CategoricalReference)
    assert isinstance(member, CategoricalReference)
    assert isinstance(prediction, CategoricalReference)

    assert colour.counts == reference["colour"].value_counts().to_dict()
    assert colour.n_missing == reference["colour"].isna().sum()
    assert member.counts == {
        str(k): v for k, v in reference["member"].value_counts().to_dict().items()
    }
    assert prediction.counts == {
        str(k): v for k, v in reference["prediction"].value_counts().to_dict().items()
    }
    assert profile.scores["1"].n == len(reference)


def test_the_sample_is_bounded_deterministic_and_drawn_from_the_data(
    reference: pd.DataFrame,
) -> None:
    feature = build(reference).features["x"]
    assert isinstance(feature, NumericReference)
    assert len(feature.sample) == 5_000
    assert not feature.sample_complete
    assert set(feature.sample) <= set(reference["x"].dropna())
    again = build(reference).features["x"]
    assert isinstance(again, NumericReference)
    assert again.sample == feature.sample

    first = reference["x"].to_numpy()[:1_000]
    small = profile_numeric(first)
    assert small.sample_complete
    np.testing.assert_array_equal(small.sample, np.sort(first[~np.isnan(first)]))


def test_json_round_trip_keeps_the_content_hash(reference: pd.DataFrame) -> None:
    profile = build(reference)
    restored = ReferenceProfile.model_validate_json(profile.model_dump_json())
    assert restored == profile
    assert restored.content_hash == profile.content_hash
    assert profile.content_hash.startswith("sha256:")


def test_the_hash_is_the_same_for_a_dict_of_arrays_and_changes_with_the_data(
    reference: pd.DataFrame,
) -> None:
    profile = build(reference)
    as_arrays = {name: reference[name].to_numpy() for name in reference.columns}
    assert build(as_arrays).content_hash == profile.content_hash  # type: ignore[arg-type]
    changed = reference.copy()
    changed.loc[0, "age"] = 200
    assert build(changed).content_hash != profile.content_hash


def test_a_column_without_values_cannot_be_a_reference() -> None:
    with pytest.raises(InsufficientData):
        ReferenceProfile.build({"x": np.array([np.nan, np.inf])}, {"x": FeatureType.NUMERIC})
    with pytest.raises(KeyError):
        ReferenceProfile.build({"x": np.array([1.0])}, {"y": FeatureType.NUMERIC})
