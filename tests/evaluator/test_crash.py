"""kill -9 on real Kafka and PostgreSQL: the evaluations equal those of an uninterrupted run.

A 200,000-event stream (two systems, late labels, duplicates) is produced to Kafka; one
evaluator process consumes it and is killed with SIGKILL three times at random points (each
time restarted), another consumes it without interruption (own consumer group, own database).
Both must write exactly the same evaluations, revisions included.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest

from shared.bus import KafkaBus, Topics
from tests.deployments import fresh_database

from .cluster import (
    consumed,
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

OBJECTIVES = [
    objective("accuracy", 0.7, id="acc", min_samples=50),
    objective("roc_auc", 0.7, id="auc", min_samples=50),
    objective("label_coverage", 0.5, id="cov"),
    objective("psi", 0.1, "lt", id="psi", parameters={"feature": "x1"}, min_samples=100),
    objective("wasserstein", 0.1, "lt", id="wass", parameters={"feature": "x2"}),
    objective("missing_rate", 0.1, "le", id="miss", parameters={"feature": "x3"}),
    objective("volume", 100, id="vol"),
    objective("estimated_accuracy", 0.6, id="cbpe"),
    objective("accuracy", 0.7, id="acc5m", window_seconds=300),
]


async def test_kill_9_three_times_gives_the_results_of_a_clean_run(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(42)
    prefix = f"crash{uuid.uuid4().hex[:8]}."
    bus = KafkaBus(kafka_bootstrap, Topics(prefix=prefix))
    await bus.start()
    profile = reference_profile()
    systems = [
        system(OBJECTIVES, system_id="crash-a", reference=profile),
        system(OBJECTIVES, system_id="crash-b", reference=profile),
    ]
    try:
        total = await produce_streams(bus, systems, n=62_000)
        assert total >= 200_000
        async with reference_server(profile) as registry_url:
            runs: dict[str, str] = {}
            for name, kills in (("clean", 0), ("killed", 3)):
                url = await asyncio.to_thread(fresh_database, database_url)
                runs[name] = url
                env = evaluator_env(
                    bootstrap=kafka_bootstrap,
                    database_url=url,
                    prefix=prefix,
                    group=f"{prefix}{name}",
                    registry_url=registry_url,
                )
                log = tmp_path / f"{name}.log"
                for _ in range(kills):
                    target = rng.randint(total // 10, total * 8 // 10)
                    with evaluator(env, log) as proc:
                        deadline = time.monotonic() + 300
                        while consumed(url) < target:
                            assert proc.poll() is None, log.read_text()[-3000:]
                            assert time.monotonic() < deadline, "no progress"
                            await asyncio.sleep(0.05)
                        await asyncio.sleep(rng.uniform(0.0, 1.0))
                        proc.kill()  # SIGKILL: no checkpoint, no commit, no goodbye
                        proc.wait()
                with evaluator(env, log) as proc:
                    await wait_consumed(url, total, [proc], log)
                    await asyncio.sleep(1.0)
        clean, killed = evaluations(runs["clean"]), evaluations(runs["killed"])
    finally:
        await bus.stop()
    assert len([k for k in clean if not k.startswith("state:")]) > 1_000
    same_evaluations(clean, killed)
