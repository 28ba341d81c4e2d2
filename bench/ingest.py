"""Ingest throughput and latency against a real Kafka broker, beside the raw producer.

    .venv/bin/python bench/ingest.py [--workers 1] [--batch-events 600000] [--singles 40000]

(or ``make bench-ingest``). Uses ``KAFKA_BOOTSTRAP`` / ``DATABASE_URL`` when set, else starts
a throwaway broker (deploy/local/kafka.py) and PostgreSQL (deploy/local/postgres.py).

Phases, all on one broker and one topic layout (3 partitions, events keyed by system_id):

1. raw producer: aiokafka ``send()`` per record (acks=all, idempotent, the producer settings
   ingest uses), then whole record batches (``create_batch``/``send_batch``), then ``send()``
   of NDJSON records of up to 1000 events (the record layout ingest writes, see
   ``shared/bus/framing.py``), same event bytes; ``ratio_to_raw`` compares with the first;
2. ingest batch path: gzip'd JSON arrays of ``--batch-size`` realistic events (20 features,
   scores, attributes), as the SDK sends them, over ``--batch-connections`` keep-alive
   connections, with ingest-key auth and duplicate detection on;
3. ingest single-event path: one uncompressed JSON event per request over
   ``--single-connections`` connections;
4. (``--compare-dedup``) the batch path again with duplicate detection off, to show its cost.

Every request body is built before its phase starts (the load generator only writes bytes
and reads answers), so the generator's CPU cost is small; it still shares the machine's
cores with ingest and Kafka. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from _service import free_port, profile, service  # bench/ helper, beside this script
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.auth import generate_api_key  # noqa: E402
from shared.bus import KafkaBus, Topics  # noqa: E402
from shared.bus.framing import frame  # noqa: E402
from shared.contracts import FeatureSpec, FeatureType, SystemSnapshot, Task, encode  # noqa: E402

SYSTEM_ID = "bench-credit-scoring"
NUMERIC = [f"num_{i}" for i in range(14)]
CATEGORICAL = {"region": ["north", "south", "east", "west"], "channel": ["web", "app", "branch"]}
CATEGORICAL |= {"segment": ["a", "b", "c"], "product": ["loan", "card", "mortgage"]}
BOOLEAN = ["existing_customer", "has_guarantor"]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- events ----------------------------------------------------------------------------------


def snapshot(key_hash: str) -> SystemSnapshot:
    features = [FeatureSpec(name=n, type=FeatureType.NUMERIC) for n in NUMERIC]
    features += [
        FeatureSpec(name=n, type=FeatureType.CATEGORICAL, categories=c)
        for n, c in CATEGORICAL.items()
    ]
    features += [FeatureSpec(name=n, type=FeatureType.BOOLEAN, nullable=True) for n in BOOLEAN]
    return SystemSnapshot(
        system_id=SYSTEM_ID,
        name="bench",
        owner="bench",
        task=Task.BINARY_CLASSIFICATION,
        features=features,
        ingest_key_hashes=[key_hash],
        updated_at=datetime.now(UTC),
    )


def event(run: str, number: int) -> dict[str, Any]:
    """A prediction as the SDK builds it: 20 features, scores, an attribute, a latency."""
    features: dict[str, Any] = {
        n: round(1000.0 * ((number * (i + 7)) % 97) / 97, 3) for i, n in enumerate(NUMERIC)
    }
    for i, (name, values) in enumerate(CATEGORICAL.items()):
        features[name] = values[(number + i) % len(values)]
    features["existing_customer"] = number % 2 == 0
    features["has_guarantor"] = None if number % 5 == 0 else number % 3 == 0
    p = (number % 100) / 100
    return {
        "event_id": f"{run}-{number:012d}",
        "system_id": SYSTEM_ID,
        "model_version": "2024.06.1",
        "timestamp": datetime.now(UTC).isoformat(),
        "features": features,
        "prediction": int(p >= 0.5),
        "scores": {"0": round(1 - p, 4), "1": round(p, 4)},
        "attributes": {"gender": "f" if number % 2 else "m"},
        "latency_ms": 3.25,
    }


def _batch_bodies(args: tuple[str, int, int, int]) -> list[bytes]:
    run, first, count, size = args
    return [
        gzip.compress(
            orjson.dumps([event(run, first + b * size + i) for i in range(size)]),
            compresslevel=1,
            mtime=0,
        )
        for b in range(count)
    ]


def batch_bodies(run: str, batches: int, size: int) -> list[bytes]:
    """gzip'd JSON arrays of distinct events, built in parallel before the phase."""
    workers = os.cpu_count() or 1
    share = -(-batches // workers)
    jobs = [
        (run, w * share * size, min(share, batches - w * share), size)
        for w in range(workers)
        if w * share < batches
    ]
    with ProcessPoolExecutor(workers) as pool:
        return [body for part in pool.map(_batch_bodies, jobs) for body in part]


# -- servers ---------------------------------------------------------------------------------


def _run_json(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local" / script), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script} {' '.join(args)} failed:\n{proc.stderr}")
    info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


@contextlib.contextmanager
def server(script: str, env_name: str, key: str) -> Iterator[tuple[str, int | None]]:
    """(URL or bootstrap, pid) from ``env_name`` (pid unknown), or of a throwaway server
    started with ``script``."""
    external = os.environ.get(env_name, "").strip()
    if external:
        yield external, None
        return
    state = Path(tempfile.mkdtemp(prefix=f"wk-bench-{script[:-3]}-"))
    try:
        log(f"starting {script[:-3]} (set {env_name} to use a running one)")
        info = _run_json(script, "up", "--state-dir", str(state))
        yield str(info[key]), int(info["pid"])
    finally:
        subprocess.run(
            [
                sys.executable,
                str(REPO / "deploy/local" / script),
                "down",
                "--purge",
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(state, ignore_errors=True)


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants."""
    if pid is None:
        return 0.0
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    family, frontier = {pid}, [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier and c not in family]
        family.update(children)
        frontier = children
    total = 0.0
    for member in family:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextlib.contextmanager
def ingest_server(
    *, bootstrap: str, database_url: str, prefix: str, workers: int, dedup: bool, logs: Path
) -> Iterator[tuple[int, int]]:
    env = {
        "WK_INGEST_BUS": "kafka",
        "WK_INGEST_KAFKA_BOOTSTRAP": bootstrap,
        "WK_INGEST_DATABASE_URL": database_url,
        "WK_INGEST_TOPIC_PREFIX": prefix,
        "WK_INGEST_PORT": str(free_port()),
        "WK_INGEST_WORKERS": str(workers),
        "WK_INGEST_AUTH_SECRET": secrets.token_urlsafe(32),
        "WK_INGEST_RATE_LIMIT_EVENTS_PER_S": "10000000",
        "WK_INGEST_DEDUP": "true" if dedup else "false",
        "WK_INGEST_LOG_LEVEL": "WARNING",
    }
    with service("ingest", env, logs) as (proc, _url):
        yield int(env["WK_INGEST_PORT"]), proc.pid


# -- load ------------------------------------------------------------------------------------


async def _connection(
    port: int,
    path: str,
    headers: bytes,
    bodies: list[bytes],
    latencies: list[float],
    accepted: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while bodies:
            body = bodies.pop()
            request = b"POST %s HTTP/1.1\r\nHost: ingest\r\n%sContent-Length: %d\r\n\r\n" % (
                path.encode(),
                headers,
                len(body),
            )
            started = time.perf_counter()
            writer.write(request + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status.startswith(b"HTTP/1.1 202"):
                raise SystemExit(f"ingest answered {status!r}: {answer[:300]!r}")
            accepted.append(orjson.loads(answer)["accepted"])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def drive(
    port: int, key: str, bodies: list[bytes], connections: int, gzipped: bool
) -> dict[str, float]:
    """Send every body over ``connections`` connections; events/s, requests/s, latencies."""
    headers = b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n" % key.encode()
    if gzipped:
        headers += b"Content-Encoding: gzip\r\n"
    latencies: list[float] = []
    accepted: list[int] = []
    queue = list(reversed(bodies))

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(port, "/v1/predictions", headers, queue, latencies, accepted)
                for _ in range(connections)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    latencies.sort()
    return {
        "events_per_s": sum(accepted) / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "events": float(sum(accepted)),
        "seconds": elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def raw_producer(
    bootstrap: str, topic: str, values: list[bytes], batch_api: bool, framed: bool = False
) -> float:
    """Events/s of aiokafka alone writing ``values`` keyed by the system, acks=all; with
    ``framed``, several events per record as ingest writes them (``shared.bus.framing``)."""
    events = len(values)
    if framed:
        values = [value for value, _start, _stop in frame(values)]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    key = SYSTEM_ID.encode()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partition = DefaultPartitioner()(key, partitions, partitions)
        started = time.perf_counter()
        futures = []
        if batch_api:
            index = 0
            while index < len(values):
                batch = producer.create_batch()
                while index < len(values) and batch.append(
                    key=key, value=values[index], timestamp=None
                ):
                    index += 1
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        else:
            for value in values:
                futures.append(await producer.send(topic, value, key=key))
                if len(futures) >= 10_000:
                    await asyncio.gather(*futures)
                    futures = []
        await asyncio.gather(*futures)
        return events / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def setup_topics(bootstrap: str, prefix: str, key_hash: str) -> None:
    bus = KafkaBus(bootstrap, Topics(prefix=prefix))
    await bus.start()
    try:
        await bus.ensure_topics([*bus.topics.specs()])
        await bus.producer.send(
            bus.topics.registry, encode(snapshot(key_hash)), key=SYSTEM_ID.encode()
        )
    finally:
        await bus.stop()


# -- main ------------------------------------------------------------------------------------


def measured(
    label: str, pids: dict[str, int | None], work: Any, *args: Any, **kwargs: Any
) -> dict[str, float]:
    """Run a load phase; adds the CPU µs per event each server process tree spent."""
    before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
    own = time.process_time()
    result: dict[str, float] = work(*args, **kwargs)
    events = max(result["events"], 1.0)
    for name, pid in pids.items():
        if pid is not None:
            result[f"cpu_us_{name}"] = (tree_cpu_s(pid) - before[name]) / events * 1e6
    result["cpu_us_load_generator"] = (time.process_time() - own) / events * 1e6
    log(f"{label}: {result['events_per_s']:,.0f} events/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingest uvicorn workers (1: on 2 cores shared with Kafka and PostgreSQL a second "
        "worker only adds contention; see docs/performance.md)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch request")
    parser.add_argument("--batch-events", type=int, default=600_000, help="batch phase events")
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--singles", type=int, default=40_000, help="single phase requests")
    parser.add_argument("--single-connections", type=int, default=64)
    parser.add_argument("--raw-events", type=int, default=400_000)
    parser.add_argument("--sqlite", action="store_true", help="duplicate store on SQLite")
    parser.add_argument("--compare-dedup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy's collapsed stacks of ingest during the batch phase to this file",
    )
    args = parser.parse_args()

    run = secrets.token_hex(4)
    prefix = f"bench{run}."
    key, key_hash = generate_api_key()
    logs = Path(tempfile.mkdtemp(prefix="wk-bench-logs-"))
    batches = args.batch_events // args.batch_size
    load_before = os.getloadavg()[0]

    log(f"building {batches} batch bodies of {args.batch_size} events, {args.singles} singles")
    batch_phase = batch_bodies(f"b{run}", batches, args.batch_size)
    compare_phase = batch_bodies(f"c{run}", batches, args.batch_size) if args.compare_dedup else []
    singles = [orjson.dumps(event(f"s{run}", n)) for n in range(args.singles)]
    distinct = [
        orjson.dumps({**event(f"r{run}", n), "schema_version": 1})
        for n in range(min(args.raw_events, 50_000))
    ]
    raw_values = [distinct[n % len(distinct)] for n in range(args.raw_events)]
    event_bytes = len(raw_values[0])

    with contextlib.ExitStack() as stack:
        bootstrap, kafka_pid = stack.enter_context(
            server("kafka.py", "KAFKA_BOOTSTRAP", "bootstrap")
        )
        pg_pid: int | None = None
        if args.sqlite:
            database_url = f"sqlite:///{logs / 'ingest.db'}"
        else:
            database_url, pg_pid = stack.enter_context(server("postgres.py", "DATABASE_URL", "url"))
        asyncio.run(setup_topics(bootstrap, prefix, key_hash))

        log("raw producer (a warm-up pass first)")
        warm = raw_values[: len(raw_values) // 4]
        asyncio.run(raw_producer(bootstrap, f"{prefix}predictions", warm, batch_api=False))
        raw = asyncio.run(raw_producer(bootstrap, f"{prefix}raw", raw_values, batch_api=False))
        raw_batch = asyncio.run(
            raw_producer(bootstrap, f"{prefix}rawbatch", raw_values, batch_api=True)
        )
        raw_framed = asyncio.run(
            raw_producer(bootstrap, f"{prefix}rawframed", raw_values, batch_api=False, framed=True)
        )

        def serve(dedup: bool, name: str) -> contextlib.AbstractContextManager[tuple[int, int]]:
            return ingest_server(
                bootstrap=bootstrap,
                database_url=database_url,
                prefix=prefix,
                workers=args.workers,
                dedup=dedup,
                logs=logs / name,
            )

        with serve(True, "ingest.log") as (port, ingest_pid):
            pids = {"ingest": ingest_pid, "kafka": kafka_pid, "postgres": pg_pid}
            drive(port, key, batch_phase[:10], 2, gzipped=True)  # warm up every worker
            profiler = profile(ingest_pid, args.profile) if args.profile else None
            batch = measured(
                "ingest batch path",
                pids,
                drive,
                port,
                key,
                batch_phase[10:],
                args.batch_connections,
                gzipped=True,
            )
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            single = measured(
                "ingest single-event path",
                pids,
                drive,
                port,
                key,
                singles,
                args.single_connections,
                gzipped=False,
            )
        no_dedup: dict[str, float] | None = None
        if args.compare_dedup:
            with serve(False, "ingest-nodedup.log") as (port, ingest_pid):
                pids = {"ingest": ingest_pid, "kafka": kafka_pid, "postgres": pg_pid}
                drive(port, key, compare_phase[:10], 2, gzipped=True)
                no_dedup = measured(
                    "ingest batch path, duplicate detection off",
                    pids,
                    drive,
                    port,
                    key,
                    compare_phase[10:],
                    args.batch_connections,
                    gzipped=True,
                )
    load_after = os.getloadavg()[0]
    shutil.rmtree(logs, ignore_errors=True)  # kept (with ingest's log) only when a phase failed

    store = "SQLite" if args.sqlite else "PostgreSQL"
    rows: list[tuple[str, float, dict[str, float] | None]] = [
        ("raw aiokafka send() per record", raw, None),
        ("raw aiokafka send_batch()", raw_batch, None),
        ("raw aiokafka send(), NDJSON records", raw_framed, None),
        (
            f"ingest batch ({args.batch_size}/req, gzip, dedup {store})",
            batch["events_per_s"],
            batch,
        ),
    ]
    if no_dedup is not None:
        label = f"ingest batch ({args.batch_size}/req, gzip, no dedup)"
        rows.append((label, no_dedup["events_per_s"], no_dedup))
    rows.append(("ingest single event (1/req)", single["events_per_s"], single))

    def cell(phase: dict[str, float] | None, name: str, spec: str) -> str:
        return "-" if phase is None or name not in phase else format(phase[name], spec)

    print(
        f"\nIngest benchmark: {os.cpu_count()} cores, {args.workers} ingest workers, "
        f"{event_bytes}-byte events (20 features), 3 partitions, one system; "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    header = f"{'path':<44} {'events/s':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
    header += f" {'/raw':>5} {'/raw batch':>10} {'/raw framed':>11}"
    header += "   CPU µs/event: ingest kafka pg loadgen"
    print(header)
    for name, eps, phase in rows:
        print(
            f"{name:<44} {eps:>9,.0f} {cell(phase, 'requests_per_s', ',.0f'):>7} "
            f"{cell(phase, 'p50_ms', '.1f'):>7} {cell(phase, 'p99_ms', '.1f'):>7} "
            f"{eps / raw:>5.2f} {eps / raw_batch:>10.2f} {eps / raw_framed:>11.2f}   "
            f"{cell(phase, 'cpu_us_ingest', '.1f'):>6} {cell(phase, 'cpu_us_kafka', '.1f'):>5} "
            f"{cell(phase, 'cpu_us_postgres', '.1f'):>3} "
            f"{cell(phase, 'cpu_us_load_generator', '.1f'):>6}"
        )
    result = {
        "batch_events_per_s": round(batch["events_per_s"]),
        "raw_producer_events_per_s": round(raw),
        "ratio_to_raw": round(batch["events_per_s"] / raw, 3),
        "raw_producer_batch_api_events_per_s": round(raw_batch),
        "ratio_to_raw_batch_api": round(batch["events_per_s"] / raw_batch, 3),
        "raw_producer_framed_events_per_s": round(raw_framed),
        "ratio_to_raw_framed": round(batch["events_per_s"] / raw_framed, 3),
        "batch_p50_ms": round(batch["p50_ms"], 2),
        "batch_p99_ms": round(batch["p99_ms"], 2),
        "single_requests_per_s": round(single["requests_per_s"]),
        "p50_ms": round(single["p50_ms"], 2),
        "p99_ms": round(single["p99_ms"], 2),
        "batch_events_per_s_dedup_off": round(no_dedup["events_per_s"]) if no_dedup else None,
        "ingest_workers": args.workers,
        "batch_size": args.batch_size,
        "dedup_store": store,
        "load_average_before": round(load_before, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
