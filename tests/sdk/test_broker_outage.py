"""Nothing lost, nothing doubled: 100,000 events through the SDK and the real ingest while the
Kafka broker is stopped for 20 seconds in the middle.

While the broker is down ingest answers 503 (Kafka did not acknowledge in time); the SDK
retries, then spools to disk. Batches that ingest gave up on may still be written by the
idempotent producer once the broker is back: ingest follows them, and answers retries of
their events as duplicates instead of producing them again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.ingest.settings import Settings
from shared.auth import generate_api_key
from tests.factories import unique
from tests.ingest.server import ingest_server
from tests.sdk.topics import topic_event_ids
from watchkeeper_sdk import Watchkeeper

EVENTS = 100_000
OUTAGE_S = 20.0


def test_no_event_lost_or_doubled_across_a_broker_outage(
    kafka_broker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="aiokafka")  # thousands of reconnect errors
    prefix = f"outage{unique('t')[-8:]}."
    system_id = unique("sys")
    key, key_hash = generate_api_key()
    settings = Settings(
        bus="kafka",
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_send_timeout_s=2.0,
        topic_prefix=prefix,
        database_url=f"sqlite:///{tmp_path / 'ingest.db'}",
        auth_secret="outage-test-secret-0123456789-0123456789",
    )
    features = {"income": 52_000.0, "region": "north", "existing_customer": True}
    with ingest_server(settings, [(system_id, {"ingest_key_hashes": [key_hash]})]) as url:
        wk = Watchkeeper(
            url,
            key,
            system_id=system_id,
            model_version="v1",
            spool_dir=tmp_path / "spool",
            backoff=0.2,
            max_backoff=2.0,
            flush_at_exit=False,
        )
        try:
            logged = [wk.log_prediction(features, prediction=i % 2) for i in range(EVENTS // 2)]
            kafka_broker.pause()
            paused_at = time.monotonic()
            try:
                for i in range(EVENTS // 2):
                    logged.append(wk.log_prediction(features, prediction=i % 2))
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - paused_at)))
                during = wk.stats()
            finally:
                kafka_broker.resume()
            assert wk.flush(timeout=120), wk.stats()
            stats = wk.stats()
        finally:
            wk.close(timeout=10)
    assert during.retried > 0  # the outage was felt: ingest answered 503s
    assert (stats.rejected, stats.dropped) == (0, 0)
    assert stats.sent == EVENTS

    on_topic = topic_event_ids(kafka_broker.bootstrap, f"{prefix}predictions", idle_s=3.0)
    doubled = [event_id for event_id, n in Counter(on_topic).items() if n > 1]
    assert doubled == []
    assert len(on_topic) == EVENTS
    assert set(on_topic) == set(logged)
