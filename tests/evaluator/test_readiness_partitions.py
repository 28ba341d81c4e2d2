"""/readyz of an evaluator restarted after a kill -9: not ready while the group still waits
for the dead member's session to expire (the new instance owns no partition yet), ready once
the partitions are assigned."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from shared.bus import KafkaBus, Topics
from tests.deployments import REPO_ROOT, free_port, fresh_database

DEAD_SESSION_MS = 30_000

MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

async def main():
    bootstrap, group, session_ms, *topics = sys.argv[1:]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=int(session_ms), heartbeat_interval_ms=1000,
    )
    await consumer.start()
    consumer.subscribe(topics)
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    print("joined", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def create_topics(bus: KafkaBus) -> None:
    await bus.start()
    await bus.stop()


def test_readyz_waits_for_the_partitions_after_a_kill_9(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix=prefix)
    bus = KafkaBus(kafka_bootstrap, topics)
    asyncio.run(create_topics(bus))
    group = f"{prefix}evaluator"

    # an evaluator of the group that holds every partition and is then killed -9
    topic_names = [topics.predictions, topics.outcomes]
    member = subprocess.Popen(
        [sys.executable, "-c", MEMBER, kafka_bootstrap, group, str(DEAD_SESSION_MS), *topic_names],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert member.stdout is not None
        assert member.stdout.readline().strip() == "joined"
    finally:
        member.send_signal(signal.SIGKILL)
        member.wait()
        if member.stdout is not None:
            member.stdout.close()

    port = free_port()
    env = {
        **os.environ,
        "WK_EVALUATOR_BUS": "kafka",
        "WK_EVALUATOR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WK_EVALUATOR_DATABASE_URL": fresh_database(database_url),
        "WK_EVALUATOR_TOPIC_PREFIX": prefix,
        "WK_EVALUATOR_GROUP_ID": group,
        "WK_EVALUATOR_PORT": str(port),
    }
    log = tmp_path / "evaluator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.evaluator"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    seen: list[tuple[int, dict[str, bool]]] = []
    try:
        deadline = time.monotonic() + DEAD_SESSION_MS / 1000 + 60
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                seen.append((response.status_code, response.json()["checks"]))
                if response.status_code == 200:
                    break
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    consuming = [(code, checks) for code, checks in seen if checks.get("consumer")]
    assert consuming, log.read_text()
    # consuming, but the group has not handed it the partitions yet: not ready
    code, checks = consuming[0]
    assert (code, checks.get("partitions")) == (503, False), seen
    assert seen[-1][0] == 200 and seen[-1][1]["partitions"] is True, log.read_text()
