"""Two evaluators in one consumer group on real Kafka + PostgreSQL hand partitions over.

Systems spread over the three stream partitions. One run: a single evaluator consumes the
stream. Other run (its own group and database): a first evaluator starts, a second joins the
group part-way (the range assignor moves a partition to it: the first checkpoints it on revoke,
the second loads that checkpoint), then the first is stopped (it checkpoints, leaves, and the
second takes its partitions over). Both runs must write the same evaluations and counters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.bus import KafkaBus, Topics
from tests.deployments import fresh_database

from .cluster import (
    consumed,
    epochs,
    evaluations,
    evaluator,
    evaluator_env,
    produce_streams,
    reference_server,
    same_evaluations,
    wait_consumed,
)
from .conftest import objective, reference_profile, system

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PARTITIONS = 3
OBJECTIVES = [
    objective("accuracy", 0.7, id="acc", min_samples=50),
    objective("label_coverage", 0.5, id="cov"),
    objective("psi", 0.1, "lt", id="psi", parameters={"feature": "x1"}, min_samples=100),
    objective("missing_rate", 0.1, "le", id="miss", parameters={"feature": "x3"}),
    objective("volume", 100, id="vol"),
    objective("accuracy", 0.7, id="acc5m", window_seconds=300),
]


def one_system_per_partition(prefix: str) -> list[str]:
    """System ids whose key lands in each partition (Kafka's murmur2 partitioner)."""
    partitioner = DefaultPartitioner()
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < PARTITIONS:
        sid = f"{prefix}{n}"
        chosen.setdefault(partitioner(sid.encode(), list(range(PARTITIONS)), []), sid)
        n += 1
    return [chosen[p] for p in range(PARTITIONS)]


async def wait_for(condition: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_handover_between_two_instances_gives_the_results_of_one(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    prefix = f"rebal{uuid.uuid4().hex[:8]}."
    bus = KafkaBus(kafka_bootstrap, Topics(prefix=prefix, partitions=PARTITIONS))
    await bus.start()
    profile = reference_profile()
    systems = [
        system(OBJECTIVES, system_id=sid, reference=profile)
        for sid in one_system_per_partition("rebal-")
    ]
    try:
        total = await produce_streams(bus, systems, n=30_000)
        async with reference_server(profile) as registry_url:
            urls = {}
            for name in ("single", "handover"):
                urls[name] = await asyncio.to_thread(fresh_database, database_url)
            env = {
                name: evaluator_env(
                    bootstrap=kafka_bootstrap,
                    database_url=url,
                    prefix=prefix,
                    group=f"{prefix}{name}",
                    registry_url=registry_url,
                )
                for name, url in urls.items()
            }
            log = tmp_path / "single.log"
            with evaluator(env["single"], log) as proc:
                await wait_consumed(urls["single"], total, [proc], log)

            url, log = urls["handover"], tmp_path / "handover.log"
            with evaluator(env["handover"], log) as first:
                await wait_for(lambda: consumed(url) >= total // 5, "the first instance")
                with evaluator(env["handover"], log) as second:
                    # the second instance took a partition over: its epoch moved past 1
                    await wait_for(lambda: max(epochs(url).values()) >= 2, "a handover")
                    await wait_for(lambda: consumed(url) >= total // 2, "both instances")
                    assert first.poll() is None and second.poll() is None, log.read_text()
                    first.terminate()  # a graceful stop: checkpoint, leave the group
                    first.wait(timeout=60)
                    await wait_consumed(url, total, [second], log)
            taken = epochs(url)
        single, handover = evaluations(urls["single"]), evaluations(urls["handover"])
    finally:
        await bus.stop()
    # every partition was taken over at least once (by the second instance at the latest)
    assert sorted(taken) == list(range(PARTITIONS))
    assert all(epoch >= 2 for epoch in taken.values()), taken
    assert len([k for k in single if not k.startswith("state:")]) > 500
    same_evaluations(single, handover)
