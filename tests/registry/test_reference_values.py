"""Every value of a reference's numeric columns: profiled by the registry, stored beside the
validated copy, served by SHA-256, loaded by the evaluator once and verified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.evaluator.app import MIGRATIONS
from services.evaluator.references import HttpReferenceSource, ReferenceCache
from shared.contracts import FeatureType
from shared.db import Database
from shared.migrations import OUTBOX, upgrade
from shared.stats.distribution import decode_distribution
from shared.stats.reference import NumericReference, ReferenceProfile
from tests.registry.conftest import Registry
from tests.registry.test_references import create_system, known_dataset, system_body, upload_csv

NUMERIC = ("income", "age", "children")


async def test_numeric_columns_name_their_exact_values_and_the_registry_serves_them(
    registry: Registry,
) -> None:
    frame = known_dataset(n=12_000, seed=5)
    system_id = await create_system(registry)
    uploaded = await upload_csv(registry, system_id, frame)
    assert uploaded.status_code == 201, uploaded.text
    profile_hash = uploaded.json()["hash"]
    stored = ReferenceProfile.model_validate_json(
        (await registry.client.get(f"/v1/references/{profile_hash}")).content
    )
    for name in NUMERIC:
        column = stored.features[name]
        assert isinstance(column, NumericReference) and column.values_sha256 is not None
        assert not column.values_binned
        response = await registry.client.get(
            f"/v1/references/{profile_hash}/values/{column.values_sha256}"
        )
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == column.values_sha256
        got = decode_distribution(response.content)
        x = frame[name].to_numpy(dtype=np.float64)
        values, counts = np.unique(x[np.isfinite(x)], return_counts=True)
        np.testing.assert_array_equal(got.values, values)
        np.testing.assert_array_equal(got.counts, counts)
    assert stored.scores["1"].values_sha256 is None  # no drift objective reads scores
    # the same profile, blobs included, as the in-memory build
    types = {f["name"]: FeatureType(f["type"]) for f in system_body()["features"]}
    in_memory = ReferenceProfile.build(
        frame, types, prediction="prediction", score_columns={"1": "score_1"}
    )
    for name in NUMERIC:
        left, right = stored.features[name], in_memory.features[name]
        assert isinstance(left, NumericReference) and isinstance(right, NumericReference)
        assert left.values_sha256 == right.values_sha256


async def test_values_of_another_profile_or_unknown_are_not_served(registry: Registry) -> None:
    system_id = await create_system(registry)
    uploaded = (await upload_csv(registry, system_id, known_dataset(n=6_000))).json()
    unknown = "0" * 64
    response = await registry.client.get(f"/v1/references/{uploaded['hash']}/values/{unknown}")
    assert response.status_code == 404
    assert "names no values" in response.json()["detail"]
    response = await registry.client.get(f"/v1/references/sha256:{unknown}/values/{unknown}")
    assert response.status_code == 404
    response = await registry.client.get(f"/v1/references/{uploaded['hash']}/values/not-hex")
    assert response.status_code == 422


async def test_the_evaluator_loads_and_verifies_the_values_once(
    registry: Registry, tmp_path: Path
) -> None:
    system_id = await create_system(registry)
    frame = known_dataset(n=8_000, seed=9)
    uploaded = (await upload_csv(registry, system_id, frame)).json()
    source = HttpReferenceSource("http://registry", transport=httpx.ASGITransport(registry.app))
    db = Database(f"sqlite:///{tmp_path}/evaluator.db")
    upgrade(db.engine, OUTBOX)
    upgrade(db.engine, MIGRATIONS)
    try:
        cache = ReferenceCache(source, db)
        await cache.ensure([uploaded["hash"]])
        profile = cache.get(uploaded["hash"])
        assert profile is not None
        income = profile.features["income"]
        assert isinstance(income, NumericReference)
        assert income.distribution is not None and income.distribution.n == 8_000
        # a restart reads profile and values from its own tables, not from the registry
        offline = ReferenceCache(HttpReferenceSource("http://nowhere.invalid"), db)
        await offline.ensure([uploaded["hash"]])
        again = offline.get(uploaded["hash"])
        assert again is not None and not again.missing_values()
    finally:
        db.dispose()


def test_a_blob_that_does_not_hash_to_its_name_is_refused() -> None:
    rng = np.random.default_rng(1)
    profile = ReferenceProfile.build({"x": rng.normal(size=7_000)}, {"x": FeatureType.NUMERIC})
    column = profile.features["x"]
    assert isinstance(column, NumericReference)
    blob = column.blob()
    assert blob is not None
    fresh = ReferenceProfile.model_validate_json(profile.model_dump_json())
    assert fresh.missing_values() == {column.values_sha256}
    with pytest.raises(ValueError, match="hashes to"):
        fresh.attach_values({column.values_sha256 or "": blob[:-8] + b"\x00" * 8})
    fresh.attach_values({column.values_sha256 or "": blob})
    assert not fresh.missing_values()


def test_a_column_beyond_a_million_distinct_values_is_stored_as_cells(tmp_path: Path) -> None:
    """The registry's streamed path for a large reference: cells on a grid cut from its
    sample; drift against it stays within the bound it states."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy import stats

    from services.registry.references import ColumnRule, ValidatedReference, profile_parquet
    from shared.stats import NumericAccumulator, column_drift

    rng = np.random.default_rng(4)
    values = rng.normal(size=1_300_000)
    pq.write_table(pa.table({"x": values}), tmp_path / "ref.parquet")
    rules = (ColumnRule(name="x", kind="numeric", role="feature"),)
    profile, _ = profile_parquet(
        ValidatedReference(path=tmp_path / "ref.parquet", n_rows=values.size, columns=rules)
    )
    column = profile.features["x"]
    assert isinstance(column, NumericReference) and column.values_binned
    blob = column.blob()
    assert blob is not None and hashlib.sha256(blob).hexdigest() == column.values_sha256
    window = rng.normal(0.05, 1.0, 5_000)
    acc = NumericAccumulator.for_reference(column)
    acc.update(window)
    result = column_drift(column, acc, "wasserstein")
    expected = stats.wasserstein_distance(values, window) / np.std(values)
    assert result.approximate and result.bound <= 1e-3
    assert abs(result.value - expected) <= result.bound
