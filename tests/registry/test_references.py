"""Reference datasets: upload, validation with a per-column report, and the stored profile
checked against numpy's quantiles and pandas' value counts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.contracts import FeatureType
from shared.stats.reference import NumericReference, ReferenceProfile
from tests.factories import make_system, unique
from tests.registry.conftest import Registry, RegistryFactory

N_ROWS = 30_000
"""Six times the profile's 5,000-value sample: quantiles cannot come from the sample alone."""


def system_body(**overrides: Any) -> dict[str, Any]:
    return make_system(
        features=[
            {"name": "income", "type": "numeric", "min": 0},
            {"name": "age", "type": "numeric", "min": 18, "max": 100},
            {"name": "children", "type": "numeric", "nullable": True},
            {"name": "region", "type": "categorical", "categories": ["north", "south", "east"]},
            {"name": "existing_customer", "type": "boolean", "nullable": True},
        ],
        prediction={"classes": ["0", "1"], "scores": ["1"]},
        **overrides,
    )


def known_dataset(n: int = N_ROWS, seed: int = 7) -> pd.DataFrame:
    """Skewed, tied, low-cardinality, missing and categorical columns with known laws."""
    rng = np.random.default_rng(seed)
    children = rng.poisson(1.2, n).astype(float)
    children[rng.random(n) < 0.05] = np.nan
    existing = rng.choice(np.array([True, False, None], dtype=object), n, p=[0.5, 0.4, 0.1])
    return pd.DataFrame(
        {
            "income": np.round(rng.lognormal(10.5, 0.6, n), 0),
            "age": rng.integers(18, 90, n),
            "children": children,
            "region": rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]),
            "existing_customer": existing,
            "prediction": rng.integers(0, 2, n),
            "score_1": rng.beta(2, 5, n),
            "unused_column": rng.random(n),
        }
    )


async def create_system(registry: Registry, **overrides: Any) -> str:
    return await registry.add_system(system_body(**overrides))


async def upload_csv(registry: Registry, system_id: str, frame: pd.DataFrame, **params: Any) -> Any:
    return await registry.client.post(
        f"/v1/systems/{system_id}/references",
        params={"filename": "reference.csv", **params},
        content=frame.to_csv(index=False).encode(),
        headers={"Content-Type": "text/csv"},
    )


def expected_bins(values: np.ndarray) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """numpy's own answer: deduplicated decile edges and the counts on them."""
    x = values[np.isfinite(values)]
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, 11)))
    bins = np.searchsorted(edges[1:-1], x, side="right")
    counts = np.bincount(bins, minlength=edges.size - 1)
    return tuple(edges.tolist()), tuple(counts.tolist())


def check_numeric(stored: Any, values: np.ndarray) -> None:
    assert isinstance(stored, NumericReference)
    finite = values[np.isfinite(values)]
    assert (stored.edges, stored.counts) == expected_bins(values)
    assert stored.n == finite.size
    assert stored.n_missing == values.size - finite.size
    assert stored.mean == pytest.approx(np.mean(finite), rel=1e-12)
    assert stored.std == pytest.approx(np.std(finite), rel=1e-9)
    assert (stored.min, stored.max) == (finite.min(), finite.max())
    assert len(stored.sample) == min(5000, finite.size)
    assert np.isin(stored.sample, finite).all()
    assert stored.n_unique == pytest.approx(np.unique(finite).size, rel=0.05)


async def test_profile_matches_numpy_quantiles_and_value_counts(
    make_registry: RegistryFactory,
) -> None:
    frame = known_dataset()
    # a small selection budget forces the multi-pass path a 1 GB file takes
    async with make_registry(reference_collect_budget=2_000) as registry:
        system_id = await create_system(registry)
        response = await upload_csv(registry, system_id, frame)
        assert response.status_code == 201, response.text
        uploaded = response.json()
        assert uploaded["n_rows"] == N_ROWS
        assert uploaded["current"] is True
        profile_response = await registry.client.get(f"/v1/references/{uploaded['hash']}")
        assert profile_response.status_code == 200
        profile = ReferenceProfile.model_validate_json(profile_response.content)
        snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()

    assert profile.content_hash == uploaded["hash"] == snapshot["reference_hash"]
    assert profile.n_rows == N_ROWS
    assert set(profile.features) == {"income", "age", "children", "region", "existing_customer"}
    check_numeric(profile.features["income"], frame["income"].to_numpy(float))
    check_numeric(profile.features["age"], frame["age"].to_numpy(float))
    children = profile.features["children"]
    check_numeric(children, frame["children"].to_numpy(float))
    assert isinstance(children, NumericReference)
    values, counts = np.unique(frame["children"].dropna(), return_counts=True)
    assert children.distinct_values == tuple(values.tolist())
    assert children.distinct_counts == tuple(counts.tolist())

    region = profile.features["region"]
    assert region.kind == "categorical"
    assert region.counts == frame["region"].value_counts().to_dict()
    existing = profile.features["existing_customer"]
    assert existing.kind == "categorical"
    expected = frame["existing_customer"].dropna().map(str).value_counts().to_dict()
    assert existing.counts == expected
    assert existing.n_missing == frame["existing_customer"].isna().sum()

    assert profile.prediction is not None and profile.prediction.kind == "categorical"
    assert profile.prediction.counts == frame["prediction"].map(str).value_counts().to_dict()
    check_numeric(profile.scores["1"], frame["score_1"].to_numpy(float))


async def test_profile_equals_the_in_memory_build(registry: Registry) -> None:
    """Same data, same profile as shared.stats' ReferenceProfile.build (small enough for it)."""
    frame = known_dataset(n=4_000, seed=3)
    system_id = await create_system(registry)
    response = await upload_csv(registry, system_id, frame)
    assert response.status_code == 201, response.text
    stored = ReferenceProfile.model_validate_json(
        (await registry.client.get(f"/v1/references/{response.json()['hash']}")).content
    )
    types = {f["name"]: FeatureType(f["type"]) for f in system_body()["features"]}
    in_memory = ReferenceProfile.build(
        frame, types, prediction="prediction", score_columns={"1": "score_1"}
    )
    for name in types:
        left, right = stored.features[name], in_memory.features[name]
        if isinstance(left, NumericReference) and isinstance(right, NumericReference):
            assert left.model_dump(exclude={"mean", "std"}) == right.model_dump(
                exclude={"mean", "std"}
            )
            assert left.mean == pytest.approx(right.mean, rel=1e-12)
            assert left.std == pytest.approx(right.std, rel=1e-9)
        else:
            assert left == right
    assert stored.prediction == in_memory.prediction


async def test_wrong_column_type_names_the_column_and_first_bad_row(registry: Registry) -> None:
    system_id = await create_system(registry)
    frame = known_dataset(n=2_000).astype({"income": object, "age": object})
    frame.loc[1_233, "income"] = "twelve thousand"
    frame.loc[1_500, "income"] = "n/a-ish"
    frame.loc[56, "age"] = 150  # above the declared max of 100
    frame.loc[9, "region"] = "west"
    response = await upload_csv(registry, system_id, frame)
    assert response.status_code == 422
    problems = {p["column"]: p for p in response.json()["detail"]}
    assert set(problems) == {"income", "age", "region"}
    assert problems["income"]["first_bad_row"] == 1_234  # rows count from 1 after the header
    assert problems["income"]["value"] == "twelve thousand"
    assert problems["income"]["bad_rows"] == 2
    assert "not a number" in problems["income"]["msg"]
    assert problems["income"]["loc"] == ["body", "income"]
    assert (problems["age"]["first_bad_row"], problems["age"]["value"]) == (57, "150")
    assert "maximum 100" in problems["age"]["msg"]
    assert (problems["region"]["first_bad_row"], problems["region"]["value"]) == (10, "west")
    listed = (await registry.client.get(f"/v1/systems/{system_id}/references")).json()
    assert listed == []


async def test_missing_values_missing_columns_and_malformed_lines(registry: Registry) -> None:
    system_id = await create_system(registry)
    frame = known_dataset(n=500).drop(columns=["age"])
    frame.loc[20, "income"] = None
    response = await upload_csv(registry, system_id, frame)
    assert response.status_code == 422
    problems = {p["column"]: p for p in response.json()["detail"]}
    assert problems["age"]["msg"] == "column 'age': column is missing from the file"
    assert problems["income"]["first_bad_row"] == 21
    assert "not nullable" in problems["income"]["msg"]

    text = known_dataset(n=50).to_csv(index=False).splitlines()
    text[11] = "1,2,3"
    response = await registry.client.post(
        f"/v1/systems/{system_id}/references?format=csv", content="\n".join(text).encode()
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["column"] == "(file)"
    assert "line 12" in problem["msg"] and "fields" in problem["msg"]

    response = await registry.client.post(
        f"/v1/systems/{system_id}/references?format=parquet", content=b"not parquet at all"
    )
    assert response.status_code == 422
    assert "not a readable parquet file" in response.text


async def test_parquet_and_multipart_and_reupload(registry: Registry) -> None:
    system_id = await create_system(registry)
    frame = known_dataset(n=3_000)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    response = await registry.client.post(
        f"/v1/systems/{system_id}/references",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 201, response.text
    parquet_hash = response.json()["hash"]
    assert response.json()["format"] == "parquet"

    # the same data as CSV profiles identically: a re-upload, answered 200
    response = await registry.client.post(
        f"/v1/systems/{system_id}/references",
        files={"file": ("reference.csv", frame.to_csv(index=False).encode(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["hash"] == parquet_hash
    listed = (await registry.client.get(f"/v1/systems/{system_id}/references")).json()
    assert [r["hash"] for r in listed] == [parquet_hash]


async def test_current_reference_per_system_and_per_model_version(registry: Registry) -> None:
    system_id = await create_system(registry)
    await registry.client.post(f"/v1/systems/{system_id}/model-versions", json={"version": "v2"})
    first = (await upload_csv(registry, system_id, known_dataset(n=800, seed=1))).json()
    second = (
        await upload_csv(
            registry, system_id, known_dataset(n=800, seed=2), model_version="v2", current=True
        )
    ).json()
    assert first["hash"] != second["hash"]
    snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()
    assert snapshot["reference_hash"] == first["hash"]
    versions = (await registry.client.get(f"/v1/systems/{system_id}/model-versions")).json()
    assert versions[0]["reference_hash"] == second["hash"]

    response = await registry.client.put(
        f"/v1/systems/{system_id}/references/current", json={"hash": second["hash"]}
    )
    assert response.status_code == 200, response.text
    snapshot = (await registry.client.get(f"/v1/systems/{system_id}/snapshot")).json()
    assert snapshot["reference_hash"] == second["hash"]
    listed = (await registry.client.get(f"/v1/systems/{system_id}/references")).json()
    assert [(r["hash"], r["current"]) for r in listed] == [
        (first["hash"], False),
        (second["hash"], True),
    ]
    response = await upload_csv(registry, system_id, known_dataset(n=10), model_version="v9")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "model_version"]


async def test_unknown_profile_and_oversized_upload(make_registry: RegistryFactory) -> None:
    async with make_registry(max_reference_bytes=10_000) as registry:
        response = await registry.client.get(f"/v1/references/sha256:{'0' * 64}")
        assert response.status_code == 404
        system_id = await create_system(registry)
        response = await upload_csv(registry, system_id, known_dataset(n=2_000))
        assert response.status_code == 413
        response = await registry.client.post(
            f"/v1/systems/{unique('nope')}/references", content=b"a,b\n1,2\n"
        )
        assert response.status_code == 404
        response = await registry.client.post(
            f"/v1/systems/{system_id}/references", content=b"a,b\n1,2\n"
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "format"]


async def test_feature_change_unsets_a_reference_that_no_longer_fits(registry: Registry) -> None:
    body = system_body()
    await registry.add_system(body)
    uploaded = (await upload_csv(registry, body["id"], known_dataset(n=300))).json()
    change = {k: v for k, v in body.items() if k != "id"}
    change["features"] = [*change["features"], {"name": "tenure", "type": "numeric"}]
    response = await registry.client.put(f"/v1/systems/{body['id']}", json=change)
    assert response.status_code == 200, response.text
    assert response.json()["reference_hash"] is None
    response = await registry.client.put(
        f"/v1/systems/{body['id']}/references/current", json={"hash": uploaded["hash"]}
    )
    assert response.status_code == 200  # selecting it again is the user's explicit choice


async def test_upload_metrics(registry: Registry) -> None:
    system_id = await create_system(registry)
    await upload_csv(registry, system_id, known_dataset(n=500))
    await upload_csv(registry, system_id, known_dataset(n=500))
    bad = known_dataset(n=10).astype({"age": object})
    bad.loc[3, "age"] = "old"
    await upload_csv(registry, system_id, bad)
    text = (await registry.client.get("/metrics")).text
    assert 'watchkeeper_registry_reference_uploads_total{outcome="stored"} 1.0' in text
    assert 'watchkeeper_registry_reference_uploads_total{outcome="unchanged"} 1.0' in text
    assert 'watchkeeper_registry_reference_uploads_total{outcome="invalid"} 1.0' in text
    assert "watchkeeper_registry_reference_processing_seconds_count 3.0" in text


async def test_parquet_columns_of_the_wrong_type(registry: Registry) -> None:
    system_id = await create_system(registry)
    frame = known_dataset(n=300)
    frame["income"] = frame["income"].astype(str)
    frame.loc[7, "income"] = "lots"
    frame["age"] = frame["age"] > 40  # booleans where numbers are declared
    frame["region"] = [[1, 2]] * len(frame)  # lists where categories are declared
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    response = await registry.client.post(
        f"/v1/systems/{system_id}/references?format=parquet", content=buffer.getvalue()
    )
    assert response.status_code == 422
    problems = {p["column"]: p for p in response.json()["detail"]}
    assert (problems["income"]["first_bad_row"], problems["income"]["value"]) == (8, "lots")
    assert "has type bool" in problems["age"]["msg"]
    assert "has type list" in problems["region"]["msg"]
