"""What a service process logs: no access-log line per health probe or Prometheus scrape, and
aiokafka's self-healing errors while a broker elects leaders are warnings, not errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.bus import KafkaBus, Topics
from tests.deployments import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_probes_and_scrapes_stay_out_of_the_access_log(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "WK_ALERTS_PORT": str(port),
        "WK_ALERTS_BUS": "memory",
        "WK_ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
    }
    log = tmp_path / "alerts.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.alerts"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(base + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            for _ in range(3):
                assert client.get(base + "/readyz").status_code == 200
                assert client.get(base + "/healthz").status_code == 200
                assert client.get(base + "/metrics").status_code == 200
            assert client.get(base + "/v1/nonconformities").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert '"GET /v1/nonconformities HTTP/1.1" 200' in text  # the access log is on
    for probe in ("/readyz", "/healthz", "/metrics"):
        assert f"GET {probe} " not in text, text


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        (
            "aiokafka.consumer.fetcher",
            "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: "
            "TopicPartition(topic='wk.registry', partition=0)",
        ),
        (
            "aiokafka.consumer.group_coordinator",
            "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
        ),
    ],
)
async def test_transient_kafka_errors_are_warnings(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture, logger: str, message: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, Topics(prefix="quiet."))
    await bus.start()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger(logger).error(message)
            logging.getLogger(logger).error("Unexpected error in fetcher routine")
    finally:
        await bus.stop()
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]
    assert levels == [("WARNING", message), ("ERROR", "Unexpected error in fetcher routine")]
