"""Evaluator processes on real Kafka + PostgreSQL, for the crash and rebalance tests.

``produce_streams`` writes synthetic streams of several systems to Kafka; ``evaluator`` runs
``python -m services.evaluator`` with given settings; ``consumed`` and ``evaluations`` read what
an evaluator database holds (offsets applied, evaluations and per-system counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

from shared.bus import KafkaBus
from shared.contracts import SystemSnapshot, encode
from shared.stats import ReferenceProfile
from tests.deployments import REPO_ROOT, free_port

from .conftest import T0, flush_events, synthetic_stream

__all__ = [
    "consumed",
    "evaluations",
    "evaluator",
    "evaluator_env",
    "produce_streams",
    "reference_server",
    "same_evaluations",
    "wait_consumed",
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


async def produce_streams(
    bus: KafkaBus, systems: Sequence[SystemSnapshot], *, n: int, rate: float = 50.0
) -> int:
    """Each system's snapshot, then its synthetic stream (late labels, duplicates); returns
    the number of records produced."""
    total = 0
    for snapshot in systems:
        await bus.producer.send(
            bus.topics.registry, encode(snapshot), key=snapshot.system_id.encode()
        )
    for i, snapshot in enumerate(systems):
        stream = synthetic_stream(
            system_id=snapshot.system_id, seed=100 + i, n=n, rate=rate, label_delay_s=120.0
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
    return total


def evaluator_env(
    *, bootstrap: str, database_url: str, prefix: str, group: str, registry_url: str
) -> dict[str, str]:
    """Settings of an evaluator without wall-clock inputs (no idle closing, no label wait, no
    future-skew guard)."""
    return {
        "WK_EVALUATOR_BUS": "kafka",
        "WK_EVALUATOR_KAFKA_BOOTSTRAP": bootstrap,
        "WK_EVALUATOR_DATABASE_URL": database_url,
        "WK_EVALUATOR_TOPIC_PREFIX": prefix,
        "WK_EVALUATOR_GROUP_ID": group,
        "WK_EVALUATOR_REGISTRY_URL": registry_url,
        "WK_EVALUATOR_ALLOWED_LATENESS_S": "5",
        "WK_EVALUATOR_IDLE_CLOSE_S": "100000",
        "WK_EVALUATOR_LABEL_WAIT_S": "1000000000",
        # the synthetic streams are dated 2027 (conftest.T0), after today's wall clock
        "WK_EVALUATOR_MAX_FUTURE_SKEW_S": "1000000000",
        "WK_EVALUATOR_CHECKPOINT_INTERVAL_S": "0.3",
    }


@contextlib.contextmanager
def evaluator(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One evaluator process; stopped with SIGTERM (a graceful stop) on exit if still running."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.evaluator"],
            cwd=REPO_ROOT,
            env={**os.environ, **env, "WK_EVALUATOR_PORT": str(free_port())},
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


def _rows(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    except sa.exc.ProgrammingError:  # tables not created yet
        return []
    finally:
        engine.dispose()


def consumed(url: str) -> int:
    """Records applied and checkpointed, over every partition of both topics."""
    rows = _rows(url, "SELECT offsets FROM evaluator_partition")
    return sum(sum(int(v) for v in (row[0] or {}).values()) for row in rows)


def epochs(url: str) -> dict[int, int]:
    """How many times each stream partition was taken over (claimed)."""
    return {
        int(p): int(e) for p, e in _rows(url, "SELECT partition, epoch FROM evaluator_partition")
    }


def evaluations(url: str) -> dict[str, dict[str, Any]]:
    """Every evaluation by id, and every system's stream counters by partition."""
    out = {row[0]: row[1] for row in _rows(url, "SELECT id, payload FROM evaluator_evaluation")}
    for partition, state in _rows(url, "SELECT partition, state FROM evaluator_partition"):
        # every counter but waiting_outcomes, which tells how the two topics happened to
        # interleave (outcomes that arrived before their prediction), not what the data is
        out[f"state:{partition}"] = {
            sid: {k: v for k, v in s["counters"].items() if k != "waiting_outcomes"}
            for sid, s in (state or {}).get("systems", {}).items()
        }
    return out


def same_evaluations(clean: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> None:
    """The same evaluations (values and bands to 1e-9: float sums over other batches) and
    counters."""
    assert clean.keys() == other.keys()
    for key, expected in clean.items():
        got = dict(other[key])
        if key.startswith("state:"):
            assert got == expected, key
            continue
        expected = dict(expected)
        a, b = expected.pop("value"), got.pop("value")
        expected["evidence"], got["evidence"] = dict(expected["evidence"]), dict(got["evidence"])
        band_a, band_b = expected["evidence"].pop("band", None), got["evidence"].pop("band", None)
        assert expected == got, key
        assert (a is None and b is None) or abs(a - b) <= 1e-9 * max(1.0, abs(a)), key
        assert (band_a is None) == (band_b is None), key
        for name in () if band_a is None else band_a:  # the sampling-error band, to rounding
            x, y = band_a[name], band_b[name]
            assert abs(x - y) <= 1e-9 * max(1.0, abs(x)), key


async def wait_consumed(
    url: str,
    total: int,
    procs: Sequence[subprocess.Popen[bytes]],
    log: Path,
    timeout_s: float = 300,
) -> None:
    deadline = time.monotonic() + timeout_s
    while consumed(url) < total:
        for proc in procs:
            assert proc.poll() is None, log.read_text()[-3000:]  # noqa: ASYNC240
        assert time.monotonic() < deadline, f"stuck at {consumed(url)}/{total}"
        await asyncio.sleep(0.5)
