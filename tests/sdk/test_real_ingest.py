"""The SDK against the real ingest service (uvicorn on 127.0.0.1, real Kafka, keys on).

The SDK's unit tests use a fake ingest written from the protocol; these check that the real
service answers in the shapes the SDK relies on: accepted/duplicates/rejected in a 202,
401/403 for keys, 413 that the SDK splits, 429 that it retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.ingest.settings import Settings
from shared.auth import generate_api_key
from tests.factories import unique
from tests.ingest.server import ingest_server
from tests.sdk.topics import topic_event_ids
from watchkeeper_sdk import ConfigurationError, DeliveryError, Watchkeeper

AUTH_SECRET = "sdk-test-secret-0123456789-0123456789"
FEATURES = {"income": 52_000.0, "region": "north", "existing_customer": True}
KEYS = {name: generate_api_key() for name in ("main", "slow", "other")}


class Setup:
    def __init__(self, url: str, bootstrap: str, prefix: str, systems: dict[str, str]) -> None:
        self.url = url
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.systems = systems  # role -> system_id

    def key(self, role: str) -> str:
        return KEYS[role][0]

    def event_ids(self, topic: str) -> list[str]:
        return topic_event_ids(self.bootstrap, f"{self.prefix}{topic}")


@pytest.fixture(scope="module")
def real_ingest(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    prefix = f"sdk{unique('t')[-8:]}."
    systems = {role: unique(role) for role in KEYS}
    settings = Settings(
        bus="kafka",
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        database_url=f"sqlite:///{tmp_path_factory.mktemp('sdk-ingest') / 'ingest.db'}",
        auth_secret=AUTH_SECRET,
        max_batch_events=50,
        rate_limits={systems["slow"]: 100.0},
    )
    registered = [(systems[role], {"ingest_key_hashes": [KEYS[role][1]]}) for role in KEYS]
    with ingest_server(settings, registered) as url:
        yield Setup(url, kafka_bootstrap, prefix, systems)


def client(setup: Setup, role: str, spool: Path, **options: Any) -> Watchkeeper:
    return Watchkeeper(
        setup.url,
        options.pop("api_key", setup.key(role)),
        system_id=setup.systems[role],
        model_version="v1",
        spool_dir=spool,
        linger=0.01,
        backoff=0.05,
        max_backoff=0.5,
        flush_at_exit=False,
        **options,
    )


def test_delivers_everything_and_counts_duplicates(real_ingest: Setup, tmp_path: Path) -> None:
    with client(real_ingest, "main", tmp_path / "a", batch_size=40) as wk:
        ids = [wk.log_prediction(FEATURES, prediction=i % 2) for i in range(120)]
        outcome_ids = [wk.log_outcome(event_id, actual=1) for event_id in ids[:30]]
        assert wk.flush(timeout=30)
        stats = wk.stats()
        assert (stats.sent, stats.rejected, stats.duplicates) == (150, 0, 0)
    # a second client resends some of the same events (as after a crash): ingest says so
    with client(real_ingest, "main", tmp_path / "b") as again:
        for event_id in ids[:7]:
            again.log_prediction(FEATURES, prediction=0, event_id=event_id)
        assert again.flush(timeout=30)
        assert (again.stats().sent, again.stats().duplicates) == (7, 7)
    on_topic = real_ingest.event_ids("predictions")
    assert sorted(e for e in on_topic if e in set(ids)) == sorted(ids)  # each exactly once
    assert sorted(e for e in real_ingest.event_ids("outcomes") if e in set(outcome_ids)) == sorted(
        outcome_ids
    )


def test_refused_events_reach_on_error_with_the_field(real_ingest: Setup, tmp_path: Path) -> None:
    errors: list[DeliveryError] = []
    with client(real_ingest, "main", tmp_path, on_error=errors.append) as wk:
        good = wk.log_prediction(FEATURES, prediction=1)
        wk.log_prediction({**FEATURES, "colour": "red"}, prediction=1)
        wk.log_prediction(
            {"income": 1.0, "region": "south"}, prediction=1
        )  # nullable missing: fine
        assert wk.flush(timeout=30)
        assert (wk.stats().sent, wk.stats().rejected) == (2, 1)
    [error] = errors
    assert error.status_code == 202
    [refused] = error.rejected
    assert refused.field == "features.colour"
    assert "unknown feature" in refused.reason
    assert good in real_ingest.event_ids("predictions")


@pytest.mark.parametrize(("api_key", "status"), [("wk_wrong", 401), ("other", 403)])
def test_wrong_keys_keep_the_events_and_are_reported(
    real_ingest: Setup, tmp_path: Path, api_key: str, status: int
) -> None:
    """401/403 may only mean the key has not reached ingest yet: kept, retried, reported."""
    errors: list[DeliveryError] = []
    key = real_ingest.key("other") if api_key == "other" else api_key
    with client(real_ingest, "main", tmp_path, api_key=key, on_error=errors.append) as wk:
        event_id = wk.log_prediction(FEATURES, prediction=1)
        with pytest.raises(ConfigurationError, match=str(status)):
            wk.flush(timeout=1)
        stats = wk.stats()
        assert (stats.rejected, stats.dropped) == (0, 0)
        assert stats.held >= 1
    assert errors == []
    assert wk.stats().spooled == 1  # kept on disk for a client with the right key
    with client(real_ingest, "main", tmp_path) as fixed:
        assert fixed.flush(timeout=30)
    assert event_id in real_ingest.event_ids("predictions")


def test_check_tells_a_wrong_key_and_a_wrong_url(real_ingest: Setup, tmp_path: Path) -> None:
    with client(real_ingest, "main", tmp_path / "a") as wk:
        wk.check(timeout=10)
    with client(real_ingest, "main", tmp_path / "b", api_key="wk_wrong") as wk:
        with pytest.raises(ConfigurationError, match="401") as raised:
            wk.check(timeout=10)
        assert raised.value.cause == "unauthorized"
    wrong_url = Setup(real_ingest.url + "/api", "", "", real_ingest.systems)
    with client(wrong_url, "main", tmp_path / "c", api_key=real_ingest.key("main")) as wk:
        with pytest.raises(ConfigurationError, match="404") as raised:
            wk.check(timeout=10)
        assert raised.value.cause == "not_found"


def test_batches_over_the_limit_are_split(real_ingest: Setup, tmp_path: Path) -> None:
    """ingest takes at most 50 events per request and answers 413; the SDK halves and resends."""
    with client(real_ingest, "main", tmp_path, batch_size=200) as wk:
        ids = [wk.log_prediction(FEATURES, prediction=1) for _ in range(200)]
        assert wk.flush(timeout=30)
        assert (wk.stats().sent, wk.stats().rejected) == (200, 0)
    assert set(ids) <= set(real_ingest.event_ids("predictions"))


def test_rate_limited_batches_are_retried(real_ingest: Setup, tmp_path: Path) -> None:
    """The slow system may send 100 events/s; 429 + Retry-After makes the SDK wait, not drop."""
    with client(real_ingest, "slow", tmp_path, batch_size=50, max_retries=50) as wk:
        ids = [wk.log_prediction(FEATURES, prediction=1) for _ in range(250)]
        assert wk.flush(timeout=60)
        stats = wk.stats()
        assert (stats.sent, stats.rejected) == (250, 0)
        assert stats.retried >= 1
    assert set(ids) <= set(real_ingest.event_ids("predictions"))
