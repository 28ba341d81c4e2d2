"""Property-based requests generated from ingest's own OpenAPI document: never a 5xx.

Ingest runs as a real HTTP server (uvicorn, in-process bus, SQLite) in a thread; schemathesis
generates bodies, query strings and headers for every operation of the schema it serves
(its pytest plugin does not support pytest 9 yet, so the cases are drawn with hypothesis).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.ingest.settings import Settings
from tests.ingest.server import ingest_server


@pytest.fixture(scope="module")
def ingest_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("schemathesis") / "ingest.db"
    settings = Settings(
        database_url=f"sqlite:///{database}", max_body_bytes=64 * 1024, max_batch_events=50
    )
    with ingest_server(settings, [("sys-1", {})]) as url:
        yield url


def test_no_request_gets_a_server_error(ingest_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{ingest_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predictions", "/v1/outcomes"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
