"""log_batch: one prediction per DataFrame row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.sdk.conftest import MODEL_VERSION, FakeIngest
from watchkeeper_sdk import InvalidEventError, Watchkeeper

MakeClient = Callable[..., Watchkeeper]


def test_columns_become_features_and_named_columns_fill_the_event(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client()
    frame = pd.DataFrame(
        {
            "age": [41.0, float("nan"), 23.0],
            "city": ["Lyon", None, "Oslo"],
            "visits": pd.array([3, None, 1], dtype="Int64"),
            "segment": ["a", "b", "a"],
            "p_yes": [0.8, 0.4, 0.1],
            "prediction": ["yes", "no", "no"],
            "event_id": ["req-1", None, "req-3"],
            "timestamp": pd.to_datetime(
                ["2024-06-01T10:00:00Z", "2024-06-01T10:00:01Z", None], utc=True
            ),
            "latency_ms": [2.5, 3.0, float("nan")],
        }
    )
    before = datetime.now(UTC)

    ids = client.log_batch(frame, attribute_columns=["segment"], score_columns={"yes": "p_yes"})

    assert client.flush(timeout=5)
    events = ingest.wait_for(3)
    assert [event["event_id"] for event in events] == ids
    assert ids[0] == "req-1" and ids[2] == "req-3"
    assert len(ids[1]) == 32  # generated for the row without one
    first, second, third = events
    assert first["features"] == {"age": 41.0, "city": "Lyon", "visits": 3}
    assert second["features"] == {"age": None, "city": None, "visits": None}
    assert first["attributes"] == {"segment": "a"}
    assert first["scores"] == {"yes": 0.8}
    assert [event["prediction"] for event in events] == ["yes", "no", "no"]
    assert first["timestamp"] == "2024-06-01T10:00:00+00:00"
    assert datetime.fromisoformat(third["timestamp"]) >= before  # missing -> now
    assert first["latency_ms"] == 2.5 and "latency_ms" not in third
    assert first["model_version"] == MODEL_VERSION


def test_feature_columns_pick_a_subset_and_model_version_can_vary_by_row(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client()
    frame = pd.DataFrame(
        {
            "a": [1, 2],
            "b": [3, 4],
            "prediction": [0.5, 0.7],
            "model_version": ["v1", None],
            "event_id": [1001, 1002],  # integer request ids are fine
        }
    )

    ids = client.log_batch(frame, feature_columns=["a"], model_version="v9")

    assert client.flush(timeout=5)
    events = ingest.wait_for(2)
    assert ids == ["1001", "1002"]
    assert [event["features"] for event in events] == [{"a": 1}, {"a": 2}]
    assert [event["model_version"] for event in events] == ["v1", "v9"]


def test_an_invalid_row_names_the_row_and_nothing_is_queued(make_client: MakeClient) -> None:
    client = make_client()
    frame = pd.DataFrame(
        {"a": [1, 2], "prediction": [1, 0], "timestamp": [datetime(2024, 1, 1)] * 2}
    )

    with pytest.raises(InvalidEventError, match=r"row 0: .*timezone"):
        client.log_batch(frame)
    with pytest.raises(InvalidEventError, match="prediction"):
        client.log_batch(pd.DataFrame({"a": [1]}))
    assert client.stats().queued == 0
    assert client.stats().sent == 0


def test_a_large_frame_larger_than_the_queue_is_not_lost(
    make_client: MakeClient, ingest: FakeIngest
) -> None:
    client = make_client(max_queue=100, batch_size=50, block_timeout=0.01)
    frame = pd.DataFrame({"x": range(1000), "prediction": [0] * 1000})

    ids = client.log_batch(frame)

    assert client.flush(timeout=20)
    assert ingest.accepted_ids() == ids
