"""The published JSON Schemas match the contracts."""

from __future__ import annotations

import orjson

from shared.contracts import CONTRACTS, PredictionEvent
from shared.jsonschema import SCHEMA_FILE, render


def test_published_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_bytes() == render(), "stale: run `make schemas`"


def test_schema_file_lists_every_contract_with_its_required_fields() -> None:
    published = orjson.loads(SCHEMA_FILE.read_bytes())
    assert set(published["contracts"]) == set(CONTRACTS)
    prediction = published["contracts"]["PredictionEvent"]
    assert set(prediction["required"]) >= {
        "event_id",
        "system_id",
        "model_version",
        "timestamp",
        "features",
        "prediction",
    }
    assert prediction == PredictionEvent.model_json_schema()
