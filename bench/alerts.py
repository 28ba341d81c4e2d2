"""Alerts benchmark: evaluations through the alerts service on Kafka + PostgreSQL.

Run with ``make bench-alerts`` (``.venv/bin/python bench/alerts.py [--evaluations 100000]
[--fingerprints 1000] [--rate 100] [--seconds 10]``). Uses ``KAFKA_BOOTSTRAP`` / ``DATABASE_URL``
when set, else starts a throwaway broker (deploy/local/kafka.py) and PostgreSQL
(deploy/local/postgres.py), as bench/ingest.py does. Two parts, then one JSON line:

1. **throughput**: 100,000 evaluations of 1,000 fingerprints (10 systems x 100 objectives, 100
   windows each; every fingerprint breaches in a few windows, so records are raised, get
   occurrences and clear) are produced to the evaluations topic first; then one alerts process
   (``python -m services.alerts``, fresh PostgreSQL database) starts and consumes them.
   ``evaluations_per_s`` = evaluations / seconds from its /readyz to the last one applied.
2. **visibility**: at 100 evaluations/s, each a breach of a new fingerprint; the time from its
   publication to its nonconformity being readable from ``GET /v1/nonconformities``;
   ``p99_visible_ms`` (and p50).

The JSON line also gives the CPU the alerts process (and, when the benchmark started them, Kafka
and PostgreSQL) spent per evaluation in part 1 — steadier than the rate on a shared machine — and
the load average before and after. The benchmark's database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from _service import free_port, service  # bench/ helper, beside this script
from ingest import server, tree_cpu_s  # bench/ingest.py: servers (env or our own), CPU time

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.bus import KafkaBus, Topics  # noqa: E402
from shared.contracts import (  # noqa: E402
    Comparator,
    EvaluationResult,
    EvaluationStatus,
    Evidence,
    encode,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(f"[bench-alerts] {message}", file=sys.stderr, flush=True)


def evaluation(system: str, objective: str, window: int, breach: bool) -> EvaluationResult:
    start = BASE + timedelta(minutes=window)
    return EvaluationResult(
        id=f"{system}:{objective}:{window}",
        system_id=system,
        model_version="v1",
        objective_id=objective,
        objective_version=1,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        metric="accuracy",
        value=0.5 if breach else 0.9,
        threshold=0.8,
        comparator=Comparator.GE,
        status=EvaluationStatus.BREACH if breach else EvaluationStatus.PASS,
        n_samples=100,
        evidence=Evidence(objective_version=1),
    )


def fresh_database(url: str) -> str:
    """A new, empty database on the same server (the service migrates it on start)."""
    name = f"wk_bench_{secrets.token_hex(4)}"
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    plain = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with contextlib.suppress(psycopg.Error), psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def processed(url: str) -> int:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        row = conn.execute("SELECT count(*) FROM alerts_processed_evaluation").fetchone()
    return int(row[0]) if row else 0


async def produce(bootstrap: str, topics: Topics, items: list[EvaluationResult]) -> None:
    bus = KafkaBus(bootstrap, topics)
    await bus.start()
    try:
        for start in range(0, len(items), 5000):
            chunk = items[start : start + 5000]
            await bus.producer.send_many(
                topics.evaluations, [(e.system_id.encode(), encode(e)) for e in chunk]
            )
    finally:
        await bus.stop()


async def visibility(
    bootstrap: str, topics: Topics, url: str, rate: float, seconds: float
) -> list[float]:
    """Publish one breach of a new fingerprint every 1/rate s; one poller reads the newest
    records every 20 ms and notes when each one became readable (the newest 250: more than
    2 s of them, so the poller stays light)."""
    bus = KafkaBus(bootstrap, topics)
    await bus.start()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    total = int(rate * seconds)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def poll() -> None:
                while len(seen) < total:
                    found = await client.get("/v1/nonconformities", params={"limit": 250})
                    now = time.perf_counter()
                    for record in found.json():
                        system = record["system_id"]
                        if system in sent and system not in seen:
                            seen[system] = now
                    await asyncio.sleep(0.02)

            poller = asyncio.create_task(poll())
            began = time.perf_counter()
            for n in range(total):
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                system = f"lat{n}"
                payload = encode(evaluation(system, "acc", 0, breach=True))
                sent[system] = time.perf_counter()
                await bus.producer.send(topics.evaluations, payload, key=system.encode())
            await asyncio.wait_for(poller, 120)
    finally:
        await bus.stop()
    return [(seen[s] - sent[s]) * 1000 for s in sent]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--fingerprints", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        bootstrap, kafka = stack.enter_context(server("kafka.py", "KAFKA_BOOTSTRAP", "bootstrap"))
        database, postgres = stack.enter_context(server("postgres.py", "DATABASE_URL", "url"))
        if not database.startswith("postgresql"):
            raise SystemExit(f"DATABASE_URL must be postgresql+psycopg://…, not {database!r}")
        figures = run(args, bootstrap, database, {"kafka": kafka, "postgres": postgres})
    print(
        json.dumps(
            {
                **figures,
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
            }
        )
    )


def run(
    args: argparse.Namespace, bootstrap: str, database: str, servers: dict[str, int | None]
) -> dict[str, object]:
    windows = args.evaluations // args.fingerprints
    log(f"building {args.evaluations} evaluations of {args.fingerprints} fingerprints")
    items = []
    for window in range(windows):
        for f in range(args.fingerprints):
            breach = window % 25 in (3, 4, 5) or (window + f) % 97 == 0
            items.append(evaluation(f"s{f % 10}", f"o{f // 10}", window, breach))
    prefix = f"benchalerts{secrets.token_hex(4)}."
    topics = Topics(prefix=prefix)
    log("producing them to Kafka")
    asyncio.run(produce(bootstrap, topics, items))
    db_url = fresh_database(database)
    port = free_port()
    env = {
        "WK_ALERTS_BUS": "kafka",
        "WK_ALERTS_KAFKA_BOOTSTRAP": bootstrap,
        "WK_ALERTS_TOPIC_PREFIX": prefix,
        "WK_ALERTS_DATABASE_URL": db_url,
        "WK_ALERTS_PORT": str(port),
        "WK_ALERTS_GROUP_ID": f"{prefix}alerts",
    }
    logs = Path(tempfile.mkdtemp(prefix="wk-bench-alerts-")) / "alerts.log"
    try:
        with service("alerts", env, logs, timeout_s=120) as (process, url):
            owners = {"alerts": process.pid, **servers}
            cpu_before = {name: tree_cpu_s(pid) for name, pid in owners.items()}
            ready = time.perf_counter()
            log("alerts ready; consuming")
            while (done := processed(db_url)) < len(items):
                # counting is a scan: seldom while far from the end, often near it
                time.sleep(0.1 if done > 0.9 * len(items) else 1.0)
            elapsed = time.perf_counter() - ready
            cpu = {
                f"{name}_cpu_us_per_evaluation": (
                    round((tree_cpu_s(pid) - cpu_before[name]) / done * 1e6, 1) if pid else None
                )
                for name, pid in owners.items()
            }
            rate = done / elapsed
            log(f"throughput: {done} evaluations in {elapsed:.1f} s = {rate:,.0f}/s; CPU {cpu}")
            with httpx.Client(base_url=url) as client:
                records = int(client.get("/v1/nonconformities").headers["X-Total-Count"])
                verified = client.get("/v1/log/verify").json()
            log(f"{records} records, log verified: {verified}")
            latencies = asyncio.run(visibility(bootstrap, topics, url, args.rate, args.seconds))
    finally:
        drop_database(db_url)
    p99 = statistics.quantiles(latencies, n=100)[98]
    p50 = statistics.median(latencies)
    log(f"visibility at {args.rate:.0f}/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    return {
        "evaluations": done,
        "fingerprints": args.fingerprints,
        "evaluations_per_s": round(rate, 1),
        **cpu,
        "records": records,
        "log_entries": verified["entries"],
        "log_ok": verified["ok"],
        "visibility_rate_per_s": args.rate,
        "p50_visible_ms": round(p50, 1),
        "p99_visible_ms": round(p99, 1),
    }


if __name__ == "__main__":
    main()
