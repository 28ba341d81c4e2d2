"""The alerts commands of the ``watchkeeper`` CLI against an alerts service served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.auth import Role, issue_token
from tests.deployments import serve_in_thread
from watchkeeper.cli import app

SECRET = "c" * 32


@pytest.fixture
def alerts_url(tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", auth_secret=SECRET)
    yield from serve_in_thread(create_app(settings), "alerts")


def test_list_show_transition_log_and_silences(alerts_url: str) -> None:
    qm = issue_token(SECRET, "quinn", Role.QUALITY_MANAGER, 600)
    sre = issue_token(SECRET, "sam", Role.SRE, 600)
    created = httpx.post(
        f"{alerts_url}/v1/nonconformities",
        json={"source": "audit", "system_id": "credit", "title": "t", "classification": "minor"},
        headers={"Authorization": f"Bearer {qm}"},
    )
    assert created.status_code == 201
    ref = created.json()["reference"]
    runner = CliRunner()

    def run(*args: str, token: str = qm, code: int = 0) -> Any:
        result = runner.invoke(app, [*args, "--url", alerts_url, "--token", token])
        assert result.exit_code == code, result.output
        return result

    listed = orjson.loads(run("nonconformities", "list", "--system", "credit", "--json").stdout)
    assert [r["reference"] for r in listed] == [ref]
    assert ref in run("nonconformities", "list").stdout
    refused = run("nonconformities", "transition", ref, "closed", code=1)
    assert "409" in refused.output and "must be triaged first" in refused.output
    forbidden = run("nonconformities", "transition", ref, "triaged", token=sre, code=1)
    assert "403" in forbidden.output
    assert run("nonconformities", "transition", ref, "triaged").stdout.strip() == f"{ref}: triaged"
    shown = orjson.loads(run("nonconformities", "show", ref, "--json").stdout)
    assert shown["status"] == "triaged" and shown["actions"] == []
    log = orjson.loads(run("nonconformities", "log", "--json").stdout)
    assert [(e["kind"], e["actor"]) for e in log] == [
        ("manual_record", "quinn"),
        ("transition", "quinn"),
    ]
    assert "ok: 2 entries" in run("nonconformities", "log", "--verify").stdout
    silence = orjson.loads(
        run(
            "silences", "create", "--match", "system_id=credit", "--reason", "retraining",
            "--hours", "2", "--json",
        ).stdout
    )  # fmt: skip
    assert silence["matchers"] == {"system_id": "credit"} and silence["author"] == "quinn"
    bad = run("silences", "create", "--match", "nonsense", "--reason", "r", "--hours", "1", code=2)
    assert "expected name=value" in bad.output
    active = orjson.loads(run("silences", "list", "--active", "--json").stdout)
    assert [s["id"] for s in active] == [silence["id"]]
    run("silences", "expire", silence["id"])
    assert orjson.loads(run("silences", "list", "--active", "--json").stdout) == []
