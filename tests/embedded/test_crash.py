"""kill -9 of `watchkeeper up` while the SDK sends at full speed: every event answered 202 is
evaluated exactly once (issue 10).

The same history (one AI system, predictions and most of their outcomes, in one past window)
is sent twice through ``watchkeeper_sdk`` to a `watchkeeper up` subprocess, each on its own
data dir and free port: once without interruption, once with three ``kill -9`` at random
points of the stream, the platform restarted each time while the SDK keeps going. The
window closes by idle closing once everything is in, so each objective is judged once, over
everything that was accepted. Both runs must give the same evaluations and the same counts
of distinct predictions and labelled outcomes.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.deployments import REPO_ROOT, free_port
from tests.factories import make_objective, make_system, past_window_start
from watchkeeper_sdk import Watchkeeper

PREDICTIONS = 20_000
WINDOW_S = 600
KILLS = 3
OBJECTIVES = [
    make_objective("volume", metric="volume", comparator="ge", threshold=1, min_samples=1),
    make_objective("accuracy", threshold=0.5),
    make_objective("coverage", metric="label_coverage", comparator="ge", threshold=0.5),
    make_objective(
        "missing",
        metric="missing_rate",
        comparator="le",
        threshold=0.5,
        parameters={"feature": "existing_customer"},
    ),
]


def history(system_id: str, start: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Predictions spread over most of one window, and outcomes for two thirds of them right
    after each, as (kind, SDK keyword arguments)."""
    rng = random.Random(7)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(PREDICTIONS):
        event_id = f"p{i}"
        ts = start + timedelta(seconds=i * WINDOW_S * 0.8 / PREDICTIONS)
        features = {
            "income": round(rng.uniform(10_000, 90_000), 2),
            "region": rng.choice(["north", "south"]),
            "existing_customer": None if i % 7 == 0 else bool(i % 2),
        }
        prediction = rng.randint(0, 1)
        events.append(
            (
                "prediction",
                {
                    "features": features,
                    "prediction": prediction,
                    "event_id": event_id,
                    "timestamp": ts,
                    "system_id": system_id,
                },
            )
        )
        if i % 3:
            actual = prediction if rng.random() < 0.8 else 1 - prediction
            events.append(
                (
                    "outcome",
                    {
                        "prediction_id": event_id,
                        "actual": actual,
                        "event_id": f"o{i}",
                        "timestamp": ts,
                        "system_id": system_id,
                    },
                )
            )
    return events


class Platform:
    """`watchkeeper up` on a data dir and port, restartable."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "watchkeeper",
                    "up",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def rows(self, sql: str) -> list[Any]:
        with contextlib.closing(sqlite3.connect(self.data_dir / "evaluator.db")) as conn:
            return conn.execute(sql).fetchall()


@contextlib.contextmanager
def platform(data_dir: Path, log: Path) -> Iterator[Platform]:
    running = Platform(data_dir, log)
    running.start()
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def register(base: str, system: dict[str, Any]) -> None:
    with httpx.Client(base_url=base + "/registry", timeout=30) as client:
        response = client.post("/v1/systems", json=system)
        assert response.status_code == 201, response.text
        for objective in OBJECTIVES:
            body = {**objective, "window_seconds": WINDOW_S}
            response = client.post(f"/v1/systems/{system['id']}/objectives", json=body)
            assert response.status_code == 201, response.text


def send(
    target: Platform,
    events: list[tuple[str, dict[str, Any]]],
    spool: Path,
    kills: list[int],
) -> None:
    """Log every event through the SDK at full speed; kill -9 and restart the platform when
    ingest has acknowledged each of ``kills`` events."""
    client = Watchkeeper(
        target.base + "/ingest",
        "open-mode",
        model_version="v1",
        spool_dir=spool,
        max_queue=len(events) + 1,
        max_retries=10_000,
        backoff=0.05,
        max_backoff=0.5,
        flush_at_exit=False,
    )
    try:
        failed: list[BaseException] = []

        def produce() -> None:
            try:
                for kind, arguments in events:
                    if kind == "prediction":
                        client.log_prediction(**arguments)
                    else:
                        client.log_outcome(**arguments)
            except BaseException as exc:
                failed.append(exc)

        producer = threading.Thread(target=produce, name="sdk-producer")
        producer.start()
        for threshold in kills:
            deadline = time.monotonic() + 120
            while client.stats().sent < threshold:
                assert time.monotonic() < deadline, f"stuck at {client.stats()}"
                assert target.proc is not None and target.proc.poll() is None, target.tail()
                time.sleep(0.01)
            target.kill()
            target.start()  # the SDK retries meanwhile
        producer.join()
        assert not failed, failed
        assert client.flush(timeout=180), client.stats()
        stats = client.stats()
        assert stats.rejected == 0, stats
        assert stats.sent == len(events), stats
    finally:
        client.close(timeout=10)


def settled(target: Platform, windows: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every objective's evaluations, once each has one (idle closing closes the window)."""
    deadline = time.monotonic() + 120
    while True:
        rows = target.rows(
            "SELECT objective_id, window_start, revision, payload FROM evaluator_evaluation"
        )
        if len({r[0] for r in rows}) == len(OBJECTIVES) and len(rows) >= windows:
            break
        assert time.monotonic() < deadline, f"{len(rows)} evaluations\n{target.tail()}"
        time.sleep(0.5)
    time.sleep(2)  # nothing else comes (a second evaluation would be a double count)
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for objective_id, window_start, revision, payload in target.rows(
        "SELECT objective_id, window_start, revision, payload FROM evaluator_evaluation"
    ):
        body = orjson.loads(payload)
        out[(objective_id, str(window_start), revision)] = {
            k: body[k] for k in ("status", "value", "n_samples", "label_coverage", "estimated")
        }
    return out


def counts(target: Platform) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (state,) in target.rows("SELECT state FROM evaluator_partition"):
        for system in (orjson.loads(state) if state else {}).get("systems", {}).values():
            for name, value in system["counters"].items():
                totals[name] = totals.get(name, 0) + value
    return totals


def test_kill_9_three_times_while_the_sdk_sends_evaluates_every_accepted_event_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    # the last whole window before now: live (idle closing judges it once everything is in)
    start = past_window_start(WINDOW_S, minutes_ago=WINDOW_S // 60)
    system = make_system("crash-embedded", label_horizon_seconds=7 * 24 * 3600)
    events = history(system["id"], start)
    results: dict[str, dict[tuple[str, str, int], dict[str, Any]]] = {}
    counted: dict[str, dict[str, int]] = {}
    for name, kills in (("clean", 0), ("killed", KILLS)):
        thresholds = sorted(
            rng.randint(len(events) // 10, len(events) * 8 // 10) for _ in range(kills)
        )
        run = tmp_path / name
        with platform(run / "data", run.with_suffix(".log")) as target:
            register(target.base, system)
            send(target, events, run / "spool", thresholds)
            results[name] = settled(target, len(OBJECTIVES))
            counted[name] = counts(target)
    clean, killed = results["clean"], results["killed"]
    assert clean == killed
    assert (
        clean[("volume", next(k[1] for k in clean if k[0] == "volume"), 0)]["n_samples"]
        == PREDICTIONS
    )
    outcomes = sum(1 for kind, _ in events if kind == "outcome")
    for run_counts in counted.values():
        assert run_counts["predictions"] - run_counts.get("duplicate_predictions", 0) == PREDICTIONS
        assert run_counts["labelled"] == outcomes
        assert not {k: v for k, v in run_counts.items() if k.startswith("late_") and v}
