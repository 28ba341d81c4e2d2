"""kill -9 on real Kafka and PostgreSQL: the evaluations equal those of an uninterrupted run.

A 200,000-event stream (two systems, late labels, duplicates) is produced to Kafka; one
evaluator process consumes it and is killed with SIGKILL three times at random points (each
time restarted), another consumes it without interruption (own consumer group, own database).
Both must write exactly the same evaluations, revisions included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

from shared.bus import KafkaBus, Topics
from shared.contracts import encode
from shared.stats import ReferenceProfile
from tests.deployments import REPO_ROOT, free_port, fresh_database

from .conftest import T0, flush_events, objective, reference_profile, synthetic_stream, system

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


@contextlib.asynccontextmanager
async def reference_server(profile: ReferenceProfile) -> AsyncIterator[str]:
    """The registry's reference endpoint (the HTTP edge the evaluator talks to)."""
    app = FastAPI()
    body = profile.model_dump_json()

    @app.get("/v1/references/{reference_hash}")
    def get(reference_hash: str) -> Response:
        if reference_hash != profile.content_hash:
            raise HTTPException(404)
        return Response(body, media_type="application/json")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def evaluator(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.evaluator"],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def consumed(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT offsets FROM evaluator_partition")).all()
    except sa.exc.ProgrammingError:  # tables not created yet
        return 0
    finally:
        engine.dispose()
    return sum(sum(int(v) for v in (row[0] or {}).values()) for row in rows)


def evaluations(url: str) -> dict[str, dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, payload FROM evaluator_evaluation")).all()
            states = conn.execute(sa.text("SELECT partition, state FROM evaluator_partition")).all()
    finally:
        engine.dispose()
    out = {row[0]: row[1] for row in rows}
    for partition, state in states:
        # every counter but waiting_outcomes, which tells how the two topics happened to
        # interleave (outcomes that arrived before their prediction), not what the data is
        out[f"state:{partition}"] = {
            sid: {k: v for k, v in s["counters"].items() if k != "waiting_outcomes"}
            for sid, s in (state or {}).get("systems", {}).items()
        }
    return out


async def wait_consumed(url: str, total: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while consumed(url) < total:
        assert proc.poll() is None, log.read_text()[-3000:]  # noqa: ASYNC240
        assert time.monotonic() < deadline, f"stuck at {consumed(url)}/{total}"
        await asyncio.sleep(0.5)


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
    total = 0
    try:
        for snapshot in systems:
            await bus.producer.send(
                bus.topics.registry, encode(snapshot), key=snapshot.system_id.encode()
            )
        for i, snapshot in enumerate(systems):
            stream = synthetic_stream(
                system_id=snapshot.system_id, seed=100 + i, n=62_000, rate=50.0, label_delay_s=120.0
            )
            flush = flush_events(snapshot.system_id, T0 + 1_000_000)
            stream.predictions += flush.predictions
            stream.outcomes += flush.outcomes
            key = snapshot.system_id.encode()
            for topic, events in (
                (bus.topics.predictions, stream.predictions),
                (bus.topics.outcomes, stream.outcomes),
            ):
                for start in range(0, len(events), 5_000):
                    chunk = [(key, encode(e)) for e in events[start : start + 5_000]]
                    await bus.producer.send_many(topic, chunk)
                total += len(events)
        assert total >= 200_000

        async with reference_server(profile) as registry_url:
            runs: dict[str, str] = {}
            for name, kills in (("clean", 0), ("killed", 3)):
                url = await asyncio.to_thread(fresh_database, database_url)
                runs[name] = url
                env = {
                    "WK_EVALUATOR_BUS": "kafka",
                    "WK_EVALUATOR_KAFKA_BOOTSTRAP": kafka_bootstrap,
                    "WK_EVALUATOR_DATABASE_URL": url,
                    "WK_EVALUATOR_TOPIC_PREFIX": prefix,
                    "WK_EVALUATOR_GROUP_ID": f"{prefix}{name}",
                    "WK_EVALUATOR_REGISTRY_URL": registry_url,
                    "WK_EVALUATOR_PORT": str(free_port()),
                    "WK_EVALUATOR_ALLOWED_LATENESS_S": "5",
                    "WK_EVALUATOR_IDLE_CLOSE_S": "100000",
                    "WK_EVALUATOR_LABEL_WAIT_S": "1000000000",
                    "WK_EVALUATOR_CHECKPOINT_INTERVAL_S": "0.3",
                }
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
                    await wait_consumed(url, total, proc, log)
                    await asyncio.sleep(1.0)
        clean, killed = evaluations(runs["clean"]), evaluations(runs["killed"])
    finally:
        await bus.stop()
    assert len([k for k in clean if not k.startswith("state:")]) > 1_000
    assert clean.keys() == killed.keys()
    for key, expected in clean.items():
        got = dict(killed[key])
        if key.startswith("state:"):
            assert got == expected, key
            continue
        expected = dict(expected)
        a, b = expected.pop("value"), got.pop("value")
        assert expected == got, key
        assert (a is None and b is None) or abs(a - b) <= 1e-9 * max(1.0, abs(a)), key
