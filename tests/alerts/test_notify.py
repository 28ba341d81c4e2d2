"""Webhook notifications in Alertmanager's format against real local HTTP receivers: retries
with backoff, one delivery, a dead-letter record after the last failure, reminders."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from services.alerts.app import create_app
from services.alerts.models import Notification
from services.alerts.settings import Route, Settings
from tests.deployments import fresh_database


class Receiver:
    """A webhook receiver on a free local port that fails its first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(orjson.loads(body))
                failing = len(outer.requests) <= outer.failures
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with Receiver(failures=2) as flaky, Receiver(failures=10**6) as broken:
        yield flaky, broken


def counters(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["receiver"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "watchkeeper_alert_notifications_total"
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_retries_then_one_delivery_and_a_dead_letter(
    backend: str, receivers: tuple[Receiver, Receiver], tmp_path: Path, request: Any
) -> None:
    flaky, broken = receivers
    url = (
        f"sqlite:///{tmp_path / 'a.db'}"
        if backend == "sqlite"
        else fresh_database(request.getfixturevalue("database_url"))
    )
    settings = Settings(
        database_url=url,
        routes=[
            Route(receiver="qm", url=flaky.url, matchers={"classification": "major"}),
            Route(receiver="pager", url=broken.url),
            Route(receiver="minor-only", url=broken.url, matchers={"severity": "minor"}),
        ],
        notify_max_attempts=3,
        notify_backoff_s=0.01,
        notify_poll_s=0.05,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            created = await client.post(
                "/v1/nonconformities",
                json={
                    "source": "incident",
                    "system_id": "credit",
                    "title": "customer harmed by a wrong refusal",
                    "classification": "major",
                },
            )
            assert created.status_code == 201
            for _ in range(400):
                found = counters((await client.get("/metrics")).text)
                if found.get(("pager", "dead")) and found.get(("qm", "sent")):
                    break
                await asyncio.sleep(0.05)
            assert found == {
                ("qm", "sent"): 1.0,
                ("qm", "failed"): 2.0,
                ("qm", "dead"): 0.0,
                ("pager", "sent"): 0.0,
                ("pager", "failed"): 3.0,
                ("pager", "dead"): 1.0,
                ("minor-only", "sent"): 0.0,
                ("minor-only", "failed"): 0.0,
                ("minor-only", "dead"): 0.0,
            }
            log = (await client.get("/v1/log")).json()
            assert [e["kind"] for e in log] == ["manual_record"]  # nothing lost from the log
            assert (await client.get("/v1/log/verify")).json()["ok"] is True
        with app.state.db.session() as session:
            rows = {n.receiver: n for n in session.exec(select(Notification)).all()}
    assert set(rows) == {"qm", "pager"}
    assert (rows["qm"].status, rows["qm"].attempts) == ("sent", 3)
    assert (rows["pager"].status, rows["pager"].attempts) == ("dead", 3)
    assert rows["pager"].last_error == "HTTP 500"
    assert len(flaky.requests) == 3 and len(broken.requests) == 3
    body = flaky.requests[-1]
    assert {k: body[k] for k in ("version", "status", "receiver")} == {
        "version": "4",
        "status": "firing",
        "receiver": "qm",
    }
    assert body["groupLabels"] == {"alertname": "Nonconformity", "system_id": "credit"}
    [item] = body["alerts"]
    assert set(item) >= {"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"}
    assert item["endsAt"] == "0001-01-01T00:00:00Z"
    assert item["labels"]["reference"] == created.json()["reference"]
    assert body["commonLabels"] == item["labels"]


async def test_overdue_actions_are_reminded_once_per_period(tmp_path: Path) -> None:
    with Receiver(failures=0) as receiver:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'a.db'}",
            routes=[Route(receiver="owners", url=receiver.url)],
            notify_poll_s=0.05,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
                nc = (
                    await client.post(
                        "/v1/nonconformities",
                        json={
                            "source": "audit",
                            "system_id": "credit",
                            "title": "t",
                            "classification": "minor",
                        },
                    )
                ).json()
                for to, fields in [
                    ("triaged", {}),
                    ("contained", {"containment": "c"}),
                    ("cause_analysed", {"root_cause_method": "other", "root_cause": "r"}),
                ]:
                    step = await client.post(
                        f"/v1/nonconformities/{nc['id']}/transitions", json={"to": to, **fields}
                    )
                    assert step.status_code == 200, step.text
                due = (datetime.now(UTC) - timedelta(days=1)).isoformat()
                action = await client.post(
                    f"/v1/nonconformities/{nc['id']}/actions",
                    json={"description": "retrain", "owner": "olivia", "due_at": due},
                )
                assert action.status_code == 201
                app.state.notifier.notify()
                for _ in range(200):
                    if len(receiver.requests) >= 2:
                        break
                    await asyncio.sleep(0.05)
                overdue = (await client.get("/v1/actions", params={"overdue": True})).json()
                assert [a["id"] for a in overdue] == [action.json()["id"]]
                kinds = [e["kind"] for e in (await client.get("/v1/log")).json()]
        alertnames = [r["alerts"][0]["labels"]["alertname"] for r in receiver.requests]
        assert alertnames == ["Nonconformity", "CorrectiveActionOverdue"]
        assert receiver.requests[1]["alerts"][0]["labels"]["action_owner"] == "olivia"
        assert kinds.count("action_overdue_reminder") == 1
