"""The demo: the embedded platform plus a synthetic AI system whose accuracy degrades.

A credit-scoring classifier is registered with an accuracy objective (>= 0.80 over 10 s
windows). Predictions and their outcomes stream in over HTTP at ``rate`` events/s; after
``degrade_after_s`` the model starts getting a third of its decisions wrong, the next closed
window breaches, and a nonconformity appears in the alerts UI and API. The demo prints the
record's page: open it and work it through (triage, containment, root cause, a corrective
action, ...) while the model keeps streaming windows into its evidence chart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from rich.console import Console

from .embedded import EmbeddedOptions, create_embedded_app

__all__ = ["DemoSummary", "demo_options", "run_demo"]

SYSTEM_ID = "credit-scoring-demo"

SYSTEM: dict[str, Any] = {
    "id": SYSTEM_ID,
    "name": "Credit scoring (synthetic demo)",
    "owner": "ml-platform@example.org",
    "task": "binary_classification",
    "features": [
        {"name": "income", "type": "numeric", "min": 0},
        {"name": "age", "type": "numeric", "min": 18, "max": 100},
        {"name": "region", "type": "categorical", "categories": ["north", "south", "east"]},
    ],
    "label_horizon_seconds": 3600,
}

OBJECTIVE: dict[str, Any] = {
    "id": "credit-accuracy",
    "metric": "accuracy",
    "comparator": "ge",
    "threshold": 0.8,
    "window_seconds": 10,
    "min_samples": 30,
    "severity": "major",
    "owner": "quality@example.org",
    "rationale": "Wrong credit decisions harm applicants; 80% is the agreed floor.",
    "references": ["ISO/IEC 42001 6.2", "A.6.2.6"],
    "changed_by": "demo",
}


@dataclass(frozen=True, slots=True)
class DemoSummary:
    events: int
    evaluations: int
    nonconformities: int
    url: str
    record_url: str | None = None
    """The page of the first nonconformity the demo raised (the web UI)."""

    def as_json(self) -> dict[str, int]:
        return {
            "events": self.events,
            "evaluations": self.evaluations,
            "nonconformities": self.nonconformities,
        }


class SyntheticSystem:
    """A binary classifier whose error rate jumps from 8% to 35% after a while."""

    def __init__(self, seed: int = 42) -> None:
        self._rng = np.random.default_rng(seed)

    def batch(self, n: int, *, degraded: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self._rng
        now = datetime.now(UTC).isoformat()
        income = rng.lognormal(10.5 + (0.4 if degraded else 0.0), 0.5, n)
        age = rng.integers(18, 90, n)
        region = rng.choice(["north", "south", "east"], n)
        actual = (income > 36_000).astype(int)
        wrong = rng.random(n) < (0.35 if degraded else 0.08)
        prediction = np.where(wrong, 1 - actual, actual)
        predictions, outcomes = [], []
        for i in range(n):
            event_id = uuid.uuid4().hex
            predictions.append(
                {
                    "event_id": event_id,
                    "system_id": SYSTEM_ID,
                    "model_version": "2026.11",
                    "timestamp": now,
                    "features": {
                        "income": float(income[i]),
                        "age": int(age[i]),
                        "region": str(region[i]),
                    },
                    "prediction": int(prediction[i]),
                    "latency_ms": float(rng.gamma(2.0, 4.0)),
                }
            )
            outcomes.append(
                {
                    "event_id": f"o-{event_id}",
                    "system_id": SYSTEM_ID,
                    "prediction_id": event_id,
                    "timestamp": now,
                    "actual": int(actual[i]),
                }
            )
        return predictions, outcomes


async def _register(client: httpx.AsyncClient) -> None:
    response = await client.post("/registry/v1/systems", json=SYSTEM)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"registering the demo system failed: {response.text}")
    response = await client.post(f"/registry/v1/systems/{SYSTEM_ID}/objectives", json=OBJECTIVE)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"registering the demo objective failed: {response.text}")


async def _post(client: httpx.AsyncClient, path: str, events: list[dict[str, Any]]) -> int:
    """Send events, retrying while ingest asks to (503 until the registry view is loaded)."""
    for _ in range(100):
        response = await client.post(path, json=events)
        if response.status_code == 202:
            accepted: int = response.json()["accepted"]
            return accepted
        if response.status_code not in (422, 503):
            raise RuntimeError(
                f"ingest refused demo events: {response.status_code} {response.text}"
            )
        await asyncio.sleep(0.2)
    raise RuntimeError(f"ingest kept refusing demo events: {response.text}")


async def _first_record(client: httpx.AsyncClient, url: str) -> str | None:
    """The web page of the demo system's first nonconformity, once there is one."""
    response = await client.get(
        "/alerts/v1/nonconformities", params={"system_id": SYSTEM_ID, "limit": 1000}
    )
    records = response.json() if response.status_code == 200 else []
    if not records:
        return None
    first = min(records, key=lambda record: str(record["raised_at"]))
    return f"{url}/alerts/nonconformities/{first['reference'] or first['id']}"


async def _count(client: httpx.AsyncClient) -> tuple[int, int]:
    evaluations = await client.get(
        "/evaluator/v1/evaluations", params={"system_id": SYSTEM_ID, "limit": 1000}
    )
    ncs = await client.get("/alerts/v1/nonconformities", params={"system_id": SYSTEM_ID})
    return len(evaluations.json()), len(ncs.json())


def demo_options(data_dir: Path) -> EmbeddedOptions:
    """A fresh database and short lateness, so the demo's windows close within seconds."""
    for stale in data_dir.glob("*.db*"):
        stale.unlink()
    return EmbeddedOptions.for_data_dir(
        data_dir, allowed_lateness_s=2.0, idle_close_s=5.0, tick_s=0.5
    )


async def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    duration_s: float | None = None,
    options: EmbeddedOptions,
    rate: int = 50,
    degrade_after_s: float = 25.0,
    console: Console | None = None,
) -> DemoSummary:
    console = console or Console(stderr=True)
    app = create_embedded_app(options)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    url = f"http://{host}:{port}"
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError(f"the server did not start on {url}")
            await asyncio.sleep(0.05)
        console.print(f"[bold]Watchkeeper[/] embedded platform on {url}")
        console.print(f"  quality manager's UI: {url}/  ·  API docs: {url}/alerts/docs")
        console.print(
            "  open mode: no sign-in, changes are recorded as 'anonymous' (with "
            "WK_<SERVICE>_AUTH_SECRET set, sign in with a token from `watchkeeper tokens issue "
            "--subject you@example.org --role quality_manager`)"
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _register(client)
            return await _stream(client, console, url, duration_s, rate, degrade_after_s)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving


async def _stream(
    client: httpx.AsyncClient,
    console: Console,
    url: str,
    duration_s: float | None,
    rate: int,
    degrade_after_s: float,
) -> DemoSummary:
    system = SyntheticSystem()
    started = time.monotonic()
    events = 0
    last_report = started
    announced = False
    record_url: str | None = None
    tick = 0.2
    per_tick = max(1, int(rate * tick))
    while duration_s is None or time.monotonic() - started < duration_s:
        elapsed = time.monotonic() - started
        degraded = elapsed >= degrade_after_s
        if degraded and not announced:
            console.print(f"[yellow]{elapsed:5.1f}s  the model starts to degrade[/]")
            announced = True
        predictions, outcomes = system.batch(per_tick, degraded=degraded)
        events += await _post(client, "/ingest/v1/predictions", predictions)
        events += await _post(client, "/ingest/v1/outcomes", outcomes)
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            evaluations, ncs = await _count(client)
            console.print(
                f"{elapsed:5.1f}s  events {events:6d}  evaluations {evaluations:3d}  "
                f"nonconformities {ncs}"
            )
            if ncs and record_url is None:
                record_url = await _first_record(client, url)
                if record_url is not None:
                    console.print(
                        f"[bold green]{elapsed:5.1f}s  a nonconformity was raised: open "
                        f"{record_url}[/]\n        and work it through in the browser (accept, "
                        "contain, root cause, corrective action, ...) while windows keep coming"
                    )
        await asyncio.sleep(tick)
    evaluations, ncs = await _count(client)
    record_url = record_url or await _first_record(client, url)
    if record_url is not None:  # only after --duration: the platform stops with the demo
        console.print(f"the demo's record: {record_url} (without --duration the UI stays up)")
    return DemoSummary(
        events=events,
        evaluations=evaluations,
        nonconformities=ncs,
        url=url,
        record_url=record_url,
    )
