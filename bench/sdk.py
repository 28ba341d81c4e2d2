"""The SDK end to end: one process logging interleaved predictions and outcomes to ingest.

    .venv/bin/python bench/sdk.py [--pairs 100000] [--batch-size 500] [--compress auto]

(or ``make bench-sdk``). Uses ``KAFKA_BOOTSTRAP`` / ``DATABASE_URL`` when set, else starts a
throwaway broker (deploy/local/kafka.py) and PostgreSQL (deploy/local/postgres.py). Registry
and ingest run as their own processes on Kafka (one topic prefix per run); the system is
registered and its ingest key created through registry's API, and the SDK's ``check()``
waits until the key has reached ingest.

Phases, on the same ingest, with the same kind of events (20 features, scores, an attribute,
a latency; distinct event_ids per phase):

1. ingest's batch path: the events posted directly with httpx as gzip'd JSON arrays of
   ``--batch-size`` (predictions, then the outcomes of the same pairs), bodies built before
   the phase, over ``--connections`` concurrent connections;
2. the SDK: one ``Watchkeeper`` client; a loop of ``log_prediction`` then ``log_outcome``
   (``--pairs`` times, the issue's pattern), then ``flush()``. Events/s end to end is from
   the first call to flush() returning (every event acknowledged by ingest, i.e. by Kafka).
   Requests and their events are counted at the client's transport. The per-call cost is
   each ``log_*`` call timed on the caller's thread. The client has the SDK's defaults
   (``--compress auto``: ingest is on this machine, so bodies are not gzip'd; ``on`` to
   compress them anyway).

Prints a table and ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from _service import free_port, service  # bench/ helper, beside this script
from ingest import CATEGORICAL, NUMERIC, log, server, tree_cpu_s  # bench/ingest.py

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from watchkeeper_sdk import ConfigurationError, Watchkeeper  # noqa: E402

SYSTEM_ID = "bench-sdk-credit-scoring"
MODEL_VERSION = "2024.06.1"


def system_definition() -> dict[str, Any]:
    features: list[dict[str, Any]] = [{"name": n, "type": "numeric"} for n in NUMERIC]
    features += [
        {"name": n, "type": "categorical", "categories": c} for n, c in CATEGORICAL.items()
    ]
    features += [
        {"name": n, "type": "boolean", "nullable": True}
        for n in ("existing_customer", "has_guarantor")
    ]
    return {
        "id": SYSTEM_ID,
        "name": "SDK bench",
        "owner": "bench@example.org",
        "task": "binary_classification",
        "features": features,
    }


def features(number: int) -> dict[str, Any]:
    values: dict[str, Any] = {
        n: round(1000.0 * ((number * (i + 7)) % 97) / 97, 3) for i, n in enumerate(NUMERIC)
    }
    for i, (name, categories) in enumerate(CATEGORICAL.items()):
        values[name] = categories[(number + i) % len(categories)]
    values["existing_customer"] = number % 2 == 0
    values["has_guarantor"] = None if number % 5 == 0 else number % 3 == 0
    return values


def scores(number: int) -> dict[str, float]:
    p = (number % 100) / 100
    return {"0": round(1 - p, 4), "1": round(p, 4)}


# -- phase 1: ingest's batch path, directly ---------------------------------------------------


def direct_bodies(run: str, pairs: int, size: int) -> list[tuple[str, bytes]]:
    """(path, gzip'd JSON array) per request: a batch of predictions, then their outcomes."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    bodies: list[tuple[str, bytes]] = []
    for start in range(0, pairs, size):
        numbers = range(start, min(pairs, start + size))
        predictions = [
            {
                "event_id": f"{run}-p{n:012d}",
                "system_id": SYSTEM_ID,
                "model_version": MODEL_VERSION,
                "timestamp": stamp,
                "features": features(n),
                "prediction": int(scores(n)["1"] >= 0.5),
                "scores": scores(n),
                "attributes": {"gender": "f" if n % 2 else "m"},
                "latency_ms": 3.25,
            }
            for n in numbers
        ]
        outcomes = [
            {
                "event_id": f"{run}-o{n:012d}",
                "system_id": SYSTEM_ID,
                "prediction_id": f"{run}-p{n:012d}",
                "timestamp": stamp,
                "actual": n % 2,
            }
            for n in numbers
        ]
        for path, events in (("/v1/predictions", predictions), ("/v1/outcomes", outcomes)):
            body = gzip.compress(orjson.dumps(events), compresslevel=1, mtime=0)
            bodies.append((path, body))
    return bodies


async def post_all(url: str, key: str, bodies: list[tuple[str, bytes]], connections: int) -> int:
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    queue = list(reversed(bodies))
    accepted = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

        async def worker() -> None:
            nonlocal accepted
            while queue:
                path, body = queue.pop()
                response = await http.post(path, content=body)
                if response.status_code != 202:
                    raise SystemExit(f"ingest answered {response.status_code}: {response.text}")
                accepted += response.json()["accepted"]

        await asyncio.gather(*(worker() for _ in range(connections)))
    return accepted


def direct_phase(url: str, key: str, pairs: int, size: int, connections: int) -> dict[str, float]:
    bodies = direct_bodies(f"d{secrets.token_hex(3)}", pairs, size)
    started = time.perf_counter()
    process_cpu = time.process_time()
    accepted = asyncio.run(post_all(url, key, bodies, connections))
    elapsed = time.perf_counter() - started
    process_cpu = time.process_time() - process_cpu
    if accepted != 2 * pairs:
        raise SystemExit(f"direct phase: ingest accepted {accepted} of {2 * pairs} events")
    return {
        "events_per_s": accepted / elapsed,
        "seconds": elapsed,
        "requests": float(len(bodies)),
        "events_per_request": accepted / len(bodies),
        "client_cpu_us_per_event": process_cpu / accepted * 1e6,
    }


# -- phase 2: the SDK --------------------------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting requests by path and answer (the SDK's I/O edge)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.events: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.requests[(request.url.path.rsplit("/", 1)[-1], response.status_code)] += 1
        if response.status_code == 202:
            answer = orjson.loads(response.content)
            self.events[request.url.path.rsplit("/", 1)[-1]] += answer["accepted"] + len(
                answer["duplicates"]
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def sdk_phase(
    url: str,
    key: str,
    pairs: int,
    size: int,
    spool: Path,
    compress: bool | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    transport = CountingTransport()
    inputs = [(features(n), int(scores(n)["1"] >= 0.5), scores(n)) for n in range(pairs)]
    attributes = [{"gender": "f"}, {"gender": "m"}]
    calls = [0] * (2 * pairs)
    clock = time.perf_counter_ns
    with Watchkeeper(
        url,
        key,
        SYSTEM_ID,
        model_version=MODEL_VERSION,
        batch_size=size,
        spool_dir=spool,
        compress=compress,
        transport=transport,
        flush_at_exit=False,
        **(options or {}),
    ) as wk:
        process_cpu = time.process_time()
        caller_cpu = time.thread_time()
        started = time.perf_counter()
        for n, (values, prediction, probabilities) in enumerate(inputs):
            t0 = clock()
            event_id = wk.log_prediction(
                values,
                prediction,
                scores=probabilities,
                attributes=attributes[n % 2],
                latency_ms=3.25,
            )
            t1 = clock()
            wk.log_outcome(event_id, n % 2)
            t2 = clock()
            calls[2 * n] = t1 - t0
            calls[2 * n + 1] = t2 - t1
        logged = time.perf_counter()
        caller_cpu = time.thread_time() - caller_cpu
        if not wk.flush(timeout=900):
            raise SystemExit(f"the SDK did not deliver everything: {wk.stats()}")
        finished = time.perf_counter()
        process_cpu = time.process_time() - process_cpu
        stats = wk.stats()
    if stats.sent != 2 * pairs or stats.rejected or stats.held:
        raise SystemExit(f"the SDK phase did not deliver exactly {2 * pairs} events: {stats}")
    delivered = [count for (_, status), count in transport.requests.items() if status == 202]
    requests = sum(delivered)
    calls.sort()
    return {
        "events_per_s": 2 * pairs / (finished - started),
        "seconds": finished - started,
        "logging_seconds": logged - started,
        "requests": float(requests),
        "failed_requests": float(sum(transport.requests.values()) - requests),
        "events_per_request": sum(transport.events.values()) / requests,
        "prediction_requests": float(transport.requests[("predictions", 202)]),
        "outcome_requests": float(transport.requests[("outcomes", 202)]),
        "spooled": float(stats.spooled),
        "call_us_mean": sum(calls) / len(calls) / 1000,
        "call_us_p50": calls[len(calls) // 2] / 1000,
        "call_us_p99": calls[int(len(calls) * 0.99)] / 1000,
        "call_us_max": calls[-1] / 1000,
        "caller_cpu_us_per_call": caller_cpu / len(calls) * 1e6,
        "sdk_process_cpu_us_per_event": process_cpu / len(calls) * 1e6,
    }


# -- setup ---------------------------------------------------------------------------------------


def register(registry_url: str) -> str:
    """The system and an ingest key, through registry's API; returns the key."""
    with httpx.Client(base_url=registry_url, timeout=30) as http:
        http.post("/v1/systems", json=system_definition()).raise_for_status()
        response = http.post(f"/v1/systems/{SYSTEM_ID}/ingest-keys", json={"name": "bench"})
        response.raise_for_status()
        key: str = response.json()["key"]
        return key


def wait_until_ingest_knows(url: str, key: str, spool: Path) -> None:
    """check() until the key has reached ingest (it learns keys from the registry topic)."""
    deadline = time.monotonic() + 60
    with Watchkeeper(url, key, SYSTEM_ID, spool_dir=spool, flush_at_exit=False) as wk:
        while True:
            try:
                wk.check(timeout=10)
                return
            except ConfigurationError as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"ingest never accepted the key: {exc}") from None
                time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="predictions (+ outcomes)")
    parser.add_argument("--batch-size", type=int, default=500, help="the SDK's batch_size")
    parser.add_argument("--connections", type=int, default=8, help="direct phase connections")
    parser.add_argument(
        "--compress",
        choices=["auto", "on", "off"],
        default="auto",
        help="the SDK's compress (auto, its default: gzip unless ingest is on this machine)",
    )
    parser.add_argument(
        "--max-in-flight", type=int, help="the SDK's max_in_flight (default: the SDK's)"
    )
    args = parser.parse_args()
    compress = {"auto": None, "on": True, "off": False}[args.compress]
    options = {} if args.max_in_flight is None else {"max_in_flight": args.max_in_flight}
    run = secrets.token_hex(4)
    work = Path(tempfile.mkdtemp(prefix="wk-bench-sdk-"))
    with contextlib.ExitStack() as stack:
        bootstrap, _ = stack.enter_context(server("kafka.py", "KAFKA_BOOTSTRAP", "bootstrap"))
        database_url, _ = stack.enter_context(server("postgres.py", "DATABASE_URL", "url"))
        prefix = f"benchsdk{run}."
        registry_env = {
            "WK_REGISTRY_BUS": "kafka",
            "WK_REGISTRY_KAFKA_BOOTSTRAP": bootstrap,
            "WK_REGISTRY_TOPIC_PREFIX": prefix,
            "WK_REGISTRY_DATABASE_URL": f"sqlite:///{work / 'registry.db'}",
            "WK_REGISTRY_REFERENCE_DIR": str(work / "references"),
            "WK_REGISTRY_PORT": str(free_port()),
            "WK_REGISTRY_LOG_LEVEL": "WARNING",
        }
        ingest_env = {
            "WK_INGEST_BUS": "kafka",
            "WK_INGEST_KAFKA_BOOTSTRAP": bootstrap,
            "WK_INGEST_DATABASE_URL": database_url,
            "WK_INGEST_TOPIC_PREFIX": prefix,
            "WK_INGEST_PORT": str(free_port()),
            "WK_INGEST_AUTH_SECRET": secrets.token_urlsafe(32),
            "WK_INGEST_RATE_LIMIT_EVENTS_PER_S": "10000000",
            "WK_INGEST_LOG_LEVEL": "WARNING",
        }
        log("starting registry and ingest on Kafka")
        _, registry_url = stack.enter_context(
            service("registry", registry_env, work / "registry.log")
        )
        key = register(registry_url)
        ingest_process, ingest_url = stack.enter_context(
            service("ingest", ingest_env, work / "ingest.log")
        )

        def with_ingest_cpu(phase: dict[str, float], before: float) -> dict[str, float]:
            used = tree_cpu_s(ingest_process.pid) - before
            phase["ingest_cpu_us_per_event"] = used / (2 * args.pairs) * 1e6
            return phase

        wait_until_ingest_knows(ingest_url, key, work / "check-spool")
        log("warm-up (both paths, 2,000 pairs each)")
        direct_phase(ingest_url, key, 2000, args.batch_size, args.connections)
        sdk_phase(ingest_url, key, 2000, args.batch_size, work / "warm-spool", compress, options)
        log(f"ingest batch path: {2 * args.pairs:,} events posted directly with httpx")
        before = tree_cpu_s(ingest_process.pid)
        direct = direct_phase(ingest_url, key, args.pairs, args.batch_size, args.connections)
        direct = with_ingest_cpu(direct, before)
        log(f"SDK: {args.pairs:,} x (log_prediction, log_outcome), then flush()")
        before = tree_cpu_s(ingest_process.pid)
        sdk = sdk_phase(
            ingest_url, key, args.pairs, args.batch_size, work / "spool", compress, options
        )
        sdk = with_ingest_cpu(sdk, before)
        load = os.getloadavg()[0]

    ratio = sdk["events_per_s"] / direct["events_per_s"]
    fill = sdk["events_per_request"] / args.batch_size
    rows = [
        ("ingest batch path (httpx, direct)", f"{direct['events_per_s']:,.0f} events/s", ""),
        ("SDK end to end (one process)", f"{sdk['events_per_s']:,.0f} events/s", ""),
        ("  SDK / batch path", f"{ratio:.0%}", "target >= 50%"),
        (
            "  requests sent (202)",
            f"{sdk['requests']:,.0f}",
            f"of which failed {sdk['failed_requests']:.0f}",
        ),
        (
            "  mean events per request",
            f"{sdk['events_per_request']:,.1f}",
            f"{fill:.0%} of batch_size {args.batch_size} (target >= 90%)",
        ),
        ("  spooled (queue overflow)", f"{sdk['spooled']:,.0f}", ""),
        (
            "  log_* on the caller's thread",
            f"{sdk['call_us_mean']:.2f} us mean",
            f"p50 {sdk['call_us_p50']:.2f}, p99 {sdk['call_us_p99']:.2f},"
            f" max {sdk['call_us_max']:,.0f} us",
        ),
        ("  logging loop alone", f"{2 * args.pairs / sdk['logging_seconds']:,.0f} calls/s", ""),
        (
            "  caller thread CPU per log_* call",
            f"{sdk['caller_cpu_us_per_call']:.2f} us",
            "(what a call costs when it is not waiting for a core or the GIL)",
        ),
        (
            "CPU per event: SDK process / ingest",
            f"{sdk['sdk_process_cpu_us_per_event']:.1f} / {sdk['ingest_cpu_us_per_event']:.1f} us",
            f"direct: client {direct['client_cpu_us_per_event']:.1f}"
            f" / ingest {direct['ingest_cpu_us_per_event']:.1f} us; load average {load:.1f}",
        ),
    ]
    width = max(len(row[0]) for row in rows) + 2
    for name, value, note in rows:
        print(f"{name:<{width}}{value:>20}  {note}")
    print(
        json.dumps(
            {
                "bench": "sdk",
                "pairs": args.pairs,
                "batch_size": args.batch_size,
                "compress": args.compress,
                "sdk_options": options,
                "direct": direct,
                "sdk": sdk,
                "ratio_sdk_to_batch_path": ratio,
                "batch_fill": fill,
                "load_average_1m": load,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
