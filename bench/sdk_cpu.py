"""The SDK's own CPU per event, against a stub ingest (no Kafka, no database).

    .venv/bin/python bench/sdk_cpu.py [--pairs 50000] [--batch-size 500] [--repeat 3]
                                      [--compress default|on|off] [--profile out.txt]

The stub is a separate process (a minimal HTTP/1.1 server on asyncio) that decompresses and
parses every body, counts its events and answers 202 as ingest does, so the SDK does its whole
job: validation, queueing, encoding, compression, the HTTP exchange, reading the answers.
Same events and calls as ``bench/sdk.py`` (20 features, scores, an attribute, a latency; a loop
of ``log_prediction`` then ``log_outcome``, then ``flush()``).

Three phases per repeat:

* ``concurrent``: the loop runs while the sender delivers (the real situation); CPU of the
  caller thread per call, of the sender thread per event, the process's CPU per event and the
  calls/s and events/s end to end;
* ``separate``: the loop fills a queue big enough for everything (``linger`` long, so the
  sender waits), then ``flush()`` delivers it all: the caller's cost per call and the sender's
  cost per event without contention for the GIL;
* ``replay``: the loop runs while ingest is unreachable (everything is spooled), then the stub
  starts on that port and ``flush()`` waits for the replay: the sender's CPU per event and
  the events/s of the replay.

Thread CPU is read with ``pthread_getcpuclockid``, so it is less sensitive to other load on the
machine than wall-clock rates (it still grows when caches are shared). With ``--profile``,
py-spy samples the SDK process (GIL holder only) during one more concurrent run. With
``--calls``, also the cost of ``log_*`` calls alone (timeit, the sender idle). Ends with one
JSON line of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from _service import free_port  # bench/ helper, beside this script

from sdk import MODEL_VERSION, SYSTEM_ID, features, scores  # bench/sdk.py
from watchkeeper_sdk import Watchkeeper

# -- the stub ingest (runs in its own process: ``sdk_cpu.py --serve PORT``) -------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, gzipped = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"content-encoding":
                    gzipped = value.strip().lower() == b"gzip"
            body = await reader.readexactly(length)
            if gzipped:
                body = zlib.decompress(body, wbits=31)
            events = orjson.loads(body)
            answer = orjson.dumps({"accepted": len(events), "duplicates": [], "rejected": []})
            writer.write(
                b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def stub(port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


# -- the SDK side ----------------------------------------------------------------------------


def thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def run(
    url: str, pairs: int, size: int, *, options: dict[str, Any], separate: bool
) -> dict[str, float]:
    inputs = [(features(n), int(scores(n)["1"] >= 0.5), scores(n)) for n in range(pairs)]
    attributes = [{"gender": "f"}, {"gender": "m"}]
    events = 2 * pairs
    with (
        tempfile.TemporaryDirectory() as spool,
        Watchkeeper(
            url,
            "wk_bench",
            SYSTEM_ID,
            model_version=MODEL_VERSION,
            batch_size=size,
            max_queue=events + 1 if separate else 10_000,
            linger=3600.0 if separate else 0.5,
            spool_dir=spool,
            flush_at_exit=False,
            **options,
        ) as wk,
    ):
        sender = wk._thread
        if separate:  # wake the sender only for flush(): no batch ever fills up
            wk._inbox.batch_size = events + 1
        wk.check()
        process0, sender0 = time.process_time(), thread_cpu(sender)
        caller0, started = time.thread_time(), time.perf_counter()
        for n, (values, prediction, probabilities) in enumerate(inputs):
            event_id = wk.log_prediction(
                values,
                prediction,
                scores=probabilities,
                attributes=attributes[n % 2],
                latency_ms=3.25,
            )
            wk.log_outcome(event_id, n % 2)
        caller = time.thread_time() - caller0
        logged = time.perf_counter()
        sender_logging = thread_cpu(sender) - sender0
        if not wk.flush(timeout=600):
            raise SystemExit(f"not delivered: {wk.stats()}")
        finished = time.perf_counter()
        sender_total = thread_cpu(sender) - sender0
        process = time.process_time() - process0
        stats = wk.stats()
    if stats.sent != events:
        raise SystemExit(f"expected {events} events sent: {stats}")
    return {
        "caller_cpu_us_per_call": caller / events * 1e6,
        "sender_cpu_us_per_event": sender_total / events * 1e6,
        "sender_cpu_while_logging_s": sender_logging,
        "process_cpu_us_per_event": process / events * 1e6,
        "calls_per_s": events / (logged - started),
        "events_per_s": events / (finished - started),
        "flush_s": finished - logged,
        "spooled": float(stats.spooled),
    }


def replay(pairs: int, size: int, *, options: dict[str, Any]) -> dict[str, float]:
    """Everything logged while ingest is unreachable (so spooled), then delivered from the
    spool once a stub answers on that port: the sender's CPU per event for the replay."""
    inputs = [(features(n), int(scores(n)["1"] >= 0.5), scores(n)) for n in range(pairs)]
    attributes = [{"gender": "f"}, {"gender": "m"}]
    events = 2 * pairs
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as spool,
        Watchkeeper(
            f"http://127.0.0.1:{port}",
            "wk_bench",
            SYSTEM_ID,
            model_version=MODEL_VERSION,
            batch_size=size,
            max_retries=0,
            backoff=0.05,
            max_backoff=0.1,
            spool_dir=spool,
            flush_at_exit=False,
            **options,
        ) as wk,
    ):
        logging.getLogger("watchkeeper_sdk").setLevel(logging.ERROR)  # "spooling events to"
        for n, (values, prediction, probabilities) in enumerate(inputs):
            event_id = wk.log_prediction(
                values,
                prediction,
                scores=probabilities,
                attributes=attributes[n % 2],
                latency_ms=3.25,
            )
            wk.log_outcome(event_id, n % 2)
        deadline = time.monotonic() + 120
        while wk.stats().spooled < events:
            if time.monotonic() > deadline:
                raise SystemExit(f"not all spooled: {wk.stats()}")
            time.sleep(0.01)
        with stub(port):
            sender0, started = thread_cpu(wk._thread), time.perf_counter()
            if not wk.flush(timeout=600):
                raise SystemExit(f"not delivered: {wk.stats()}")
            finished = time.perf_counter()
            sender = thread_cpu(wk._thread) - sender0
        stats = wk.stats()
    if stats.sent != events or stats.replayed != events:
        raise SystemExit(f"expected {events} events replayed: {stats}")
    return {
        "sender_cpu_us_per_event": sender / events * 1e6,
        "events_per_s": events / (finished - started),
    }


def per_call(url: str) -> dict[str, float]:
    """``log_*`` with the sender idle (``linger`` long): timeit, best of 30 x 2,000 calls, the
    queue emptied before each 2,000 (as the sender would)."""
    f2 = {"age": 41, "income": 52_000.5}
    f10 = {f"f{i}": i + 0.5 for i in range(8)} | {"region": "north", "vip": True}
    scores2 = {"0": 0.25, "1": 0.75}
    f20 = features(7)  # the bench's 20 features
    with (
        tempfile.TemporaryDirectory() as spool,
        Watchkeeper(
            url, "wk_bench", SYSTEM_ID, model_version=MODEL_VERSION, linger=3600.0,
            max_queue=10_000_000, spool_dir=spool, flush_at_exit=False,
        ) as wk,
    ):  # fmt: skip
        wk._inbox.batch_size = 10_000_000  # the sender is never woken
        cases: dict[str, Callable[[], object]] = {
            "prediction_2_features_us": lambda: wk.log_prediction(f2, 1),
            "prediction_10_features_scores_us": lambda: wk.log_prediction(f10, 1, scores=scores2),
            "prediction_as_in_the_bench_us": lambda: wk.log_prediction(
                f20, 1, scores=scores2, attributes={"gender": "f"}, latency_ms=3.25
            ),
            "outcome_us": lambda: wk.log_outcome("01a2495e1c3b4f0e9d8c7b6a5f4e3d2c", 1),
        }
        costs = {
            name: min(timeit.repeat(call, setup=wk._inbox.items.clear, number=2000, repeat=30))
            / 2000
            * 1e6
            for name, call in cases.items()
        }
        wk._inbox.items.clear()
        return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--compress",
        choices=["default", "on", "off"],
        default="default",
        help="the client's compress (default: the SDK's default, i.e. not on loopback)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy --gil samples (raw) to this file")
    parser.add_argument("--calls", action="store_true", help="also log_* alone (sender idle)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.serve))
        return
    options = {} if args.compress == "default" else {"compress": args.compress == "on"}
    results: dict[str, list[dict[str, float]]] = {"concurrent": [], "separate": [], "replay": []}
    with stub() as url:
        run(url, 2000, args.batch_size, options=options, separate=False)  # warm-up
        for _ in range(args.repeat):
            for phase in ("concurrent", "separate"):
                results[phase].append(
                    run(
                        url,
                        args.pairs,
                        args.batch_size,
                        options=options,
                        separate=phase == "separate",
                    )
                )
            results["replay"].append(replay(args.pairs, args.batch_size, options=options))
            if args.calls:
                results.setdefault("calls", []).append(per_call(url))
        if args.profile:
            spy = Path(sys.executable).with_name("py-spy")
            command = [str(spy), "record", "--pid", str(os.getpid()), "--format", "raw", "--gil"]
            command += ["--rate", "500", "--nonblocking", "--output", str(args.profile)]
            profiler = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)
            run(url, args.pairs, args.batch_size, options=options, separate=False)
            profiler.send_signal(2)
            profiler.wait(60)
    medians: dict[str, Any] = {
        phase: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for phase, runs in results.items()
    }
    for phase, figures in medians.items():
        print(f"{phase} (median of {args.repeat}):")
        for key, value in figures.items():
            print(f"  {key:<36}{value:>12,.2f}")
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}, {os.cpu_count()} CPUs")
    print(
        json.dumps(
            {
                "bench": "sdk_cpu",
                "pairs": args.pairs,
                "batch_size": args.batch_size,
                "compress": args.compress,
                **medians,
                "load_average_1m": load,
            }
        )
    )


if __name__ == "__main__":
    main()
