"""The nonconformity API: the lifecycle over HTTP with role checks, 409s naming the missing
step, manual records, lists with filters and paging, silences and the log (on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.auth import Role, issue_token
from tests.deployments import fresh_database

SECRET = "s" * 32


def as_user(role: Role, subject: str = "quinn") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, subject, role, 600)}"}


QM = as_user(Role.QUALITY_MANAGER)


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    url = fresh_database(database_url)
    app = create_app(Settings(database_url=url, auth_secret=SECRET, due_days_major=10))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as http:
            http.headers["X-Database"] = url  # for the tamper test below
            yield http


async def manual(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "source": "audit",
        "system_id": "credit",
        "title": "no monitoring of the fallback model",
        "classification": "major",
        **fields,
    }
    response = await client.post("/v1/nonconformities", json=body, headers=QM)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def step(
    client: httpx.AsyncClient, nc_id: str, to: str, headers: dict[str, str] = QM, **fields: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/nonconformities/{nc_id}/transitions", json={"to": to, **fields}, headers=headers
    )


async def test_the_whole_lifecycle_over_http(client: httpx.AsyncClient) -> None:
    nc = await manual(client)
    year = datetime.now(UTC).year
    assert nc["reference"] == f"NC-{year}-0001" and nc["source"] == "audit"
    assert nc["created_by"] == "quinn" and nc["status"] == "raised"
    due = datetime.fromisoformat(nc["due_at"]) - datetime.fromisoformat(nc["raised_at"])
    assert due == timedelta(days=10)  # the configured default for a major record
    ref = nc["reference"]

    refused = await step(client, ref, "closed")
    assert refused.status_code == 409
    assert "must be triaged first" in refused.json()["detail"]
    assert (await step(client, ref, "triaged", owner="owen")).status_code == 200
    refused = await step(client, ref, "contained")
    assert refused.status_code == 409 and "containment" in refused.json()["detail"]
    assert (await step(client, ref, "contained", containment="fallback off")).status_code == 200
    refused = await step(client, ref, "action_planned")
    assert refused.status_code == 409 and "cause_analysed first" in refused.json()["detail"]
    early = await client.post(
        f"/v1/nonconformities/{ref}/actions",
        json={"description": "x", "owner": "olivia", "due_at": "2030-01-01T00:00:00Z"},
        headers=QM,
    )
    assert early.status_code == 409 and "root cause" in early.json()["detail"]
    bad = await step(client, ref, "cause_analysed", root_cause_method="guess", root_cause="x")
    assert bad.status_code == 422 and "root_cause_method" in bad.text
    analysed = await step(
        client,
        ref,
        "cause_analysed",
        root_cause_method="fishbone",
        root_cause="no owner for the fallback",
        contributing_causes=["org chart"],
    )
    assert analysed.status_code == 200
    action = await client.post(
        f"/v1/nonconformities/{ref}/actions",
        json={"description": "monitor it", "owner": "olivia", "due_at": "2030-01-01T00:00:00Z"},
        headers=QM,
    )
    assert action.status_code == 201
    action_id = action.json()["id"]
    assert (await step(client, ref, "action_planned")).status_code == 200
    refused = await step(client, ref, "action_implemented")
    assert refused.status_code == 409 and "1 corrective action(s) not implemented" in refused.text
    no_evidence = await client.patch(
        f"/v1/actions/{action_id}", json={"status": "implemented"}, headers=QM
    )
    assert no_evidence.status_code == 409 and "evidence link" in no_evidence.text
    done = await client.patch(
        f"/v1/actions/{action_id}",
        json={"status": "implemented", "evidence_links": ["https://git/pr/7"]},
        headers=QM,
    )
    assert done.status_code == 200 and done.json()["status"] == "implemented"
    assert (await step(client, ref, "action_implemented")).status_code == 200
    owner_reviews = await step(client, ref, "effectiveness_review", reviewer="olivia")
    assert owner_reviews.status_code == 409 and "owns a corrective action" in owner_reviews.text
    review = await step(
        client, ref, "effectiveness_review", reviewer="rita", review_method="audit sample"
    )
    assert review.status_code == 200
    refused = await step(client, ref, "closed")
    assert refused.status_code == 409 and "confirmed" in refused.text
    back = await step(client, ref, "cause_analysed", review_result="not_effective")
    assert back.status_code == 200 and back.json()["status"] == "cause_analysed"

    shown = (await client.get(f"/v1/nonconformities/{ref}", headers=as_user(Role.AUDITOR))).json()
    assert shown["actions"][0]["evidence_links"] == ["https://git/pr/7"]
    log = (await client.get("/v1/log", params={"subject": nc["id"]}, headers=QM)).json()
    assert [e["kind"] for e in log] == [
        "manual_record", "transition", "transition", "transition", "action_planned",
        "transition", "action_updated", "transition", "transition", "transition",
    ]  # fmt: skip
    assert {e["actor"] for e in log} == {"quinn"}
    assert log[-1]["before"]["status"] == "effectiveness_review"
    verified = (await client.get("/v1/log/verify", headers=as_user(Role.AUDITOR))).json()
    assert verified == {"ok": True, "entries": 10, "first_broken_seq": None, "reason": None}


@pytest.mark.parametrize("role", [Role.SRE, Role.AUDITOR, Role.ML_ENGINEER])
async def test_only_quality_managers_and_admins_write(
    client: httpx.AsyncClient, role: Role
) -> None:
    nc = await manual(client)
    headers = as_user(role)
    refused = await step(client, nc["id"], "triaged", headers=headers)
    assert refused.status_code == 403 and "quality_manager" in refused.text
    writes = [
        client.post("/v1/nonconformities", json={}, headers=headers),
        client.post(
            f"/v1/nonconformities/{nc['id']}/classification",
            json={"classification": "minor", "reason": "x"},
            headers=headers,
        ),
        client.post("/v1/silences", json={}, headers=headers),
    ]
    for write in writes:
        assert (await write).status_code == 403
    for path in ("/v1/nonconformities", f"/v1/nonconformities/{nc['id']}", "/v1/actions",
                 "/v1/silences", "/v1/log", "/v1/log/verify"):  # fmt: skip
        assert (await client.get(path, headers=headers)).status_code == 200, path
    admin = await step(client, nc["id"], "triaged", headers=as_user(Role.ADMIN, "ada"))
    assert admin.status_code == 200


async def test_rejecting_needs_a_kind_and_a_reason(client: httpx.AsyncClient) -> None:
    nc = await manual(client, source="complaint")
    refused = await step(client, nc["id"], "rejected", rejection="duplicate", reason="same")
    assert refused.status_code == 409 and "duplicate_of" in refused.text
    rejected = await step(
        client, nc["id"], "rejected", rejection="false_positive", reason="test traffic"
    )
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["open"]) == ("rejected", False)
    again = await step(client, nc["id"], "triaged")
    assert again.status_code == 409 and "is rejected" in again.text


async def test_lists_filter_and_page(client: httpx.AsyncClient) -> None:
    made = [
        await manual(client, classification=c, owner=o, system_id=s)
        for c, o, s in [("major", "a", "x"), ("minor", "b", "x"), ("minor", "a", "y")]
    ]
    overdue = await manual(client, due_at="2020-01-01T00:00:00Z")
    await step(client, made[1]["id"], "triaged")

    async def ids(**params: Any) -> tuple[set[str], str]:
        response = await client.get("/v1/nonconformities", params=params, headers=QM)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()}, response.headers["X-Total-Count"]

    assert await ids(classification="minor") == ({made[1]["id"], made[2]["id"]}, "2")
    assert await ids(owner="a", system_id="x") == ({made[0]["id"]}, "1")
    assert await ids(state="triaged") == ({made[1]["id"]}, "1")
    assert await ids(overdue=True) == ({overdue["id"]}, "1")
    assert (await ids(min_age_days=1))[0] == set()
    page1, total = await ids(limit=3)
    page2, _ = await ids(limit=3, offset=3)
    assert total == "4" and len(page1) == 3 and len(page2) == 1 and not page1 & page2
    bad = await client.get("/v1/nonconformities", params={"state": "nope"}, headers=QM)
    assert bad.status_code == 422 and "state" in bad.text


async def test_classification_changes_need_a_reason_and_are_logged(
    client: httpx.AsyncClient,
) -> None:
    nc = await manual(client)
    path = f"/v1/nonconformities/{nc['id']}/classification"
    missing = await client.post(path, json={"classification": "minor"}, headers=QM)
    assert missing.status_code == 422 and "reason" in missing.text
    changed = await client.post(
        path, json={"classification": "minor", "reason": "one customer only"}, headers=QM
    )
    assert changed.json()["classification"] == "minor"
    [entry] = (await client.get("/v1/log", params={"kind": "classification"}, headers=QM)).json()
    assert entry["before"]["classification"] == "major"
    assert (entry["after"]["classification"], entry["after"]["reason"]) == (
        "minor",
        "one customer only",
    )


async def test_silences_are_listed_expired_early_and_logged(client: httpx.AsyncClient) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    bad = await client.post(
        "/v1/silences",
        json={"matchers": {"team": "x"}, "reason": "r", "expires_at": expires},
        headers=QM,
    )
    assert bad.status_code == 422 and "matchers" in bad.text
    made = await client.post(
        "/v1/silences",
        json={"matchers": {"system_id": "credit"}, "reason": "retraining", "expires_at": expires},
        headers=QM,
    )
    assert made.status_code == 201 and made.json()["author"] == "quinn"
    active = (await client.get("/v1/silences?active_only=true", headers=QM)).json()
    assert [s["id"] for s in active] == [made.json()["id"]]
    expired = await client.post(f"/v1/silences/{made.json()['id']}/expire", headers=QM)
    assert expired.status_code == 200 and expired.json()["expired_by"] == "quinn"
    assert (await client.get("/v1/silences?active_only=true", headers=QM)).json() == []
    kinds = [e["kind"] for e in (await client.get("/v1/log", headers=QM)).json()]
    assert kinds == ["silence_created", "silence_expired"]


async def test_a_row_edited_in_postgresql_is_named_by_verify(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await manual(client)
    engine = create_engine(client.headers["X-Database"])
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE alerts_log SET after = CAST(:v AS json) WHERE seq = 2"),
            {"v": '{"status": "closed"}'},
        )
    engine.dispose()
    verified = (await client.get("/v1/log/verify", headers=QM)).json()
    assert verified["ok"] is False and verified["first_broken_seq"] == 2


async def add_action(client: httpx.AsyncClient, ref: str, owner: str = "olivia") -> str:
    made = await client.post(
        f"/v1/nonconformities/{ref}/actions",
        json={"description": "retrain", "owner": owner, "due_at": "2030-01-01T00:00:00Z"},
        headers=QM,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def implement(client: httpx.AsyncClient, action_id: str) -> None:
    done = await client.patch(
        f"/v1/actions/{action_id}",
        json={"status": "implemented", "evidence_links": ["https://git/pr/8"]},
        headers=QM,
    )
    assert done.status_code == 200, done.text


async def test_not_effective_needs_a_new_action_plan(client: httpx.AsyncClient) -> None:
    """After a review found the actions not effective, the old (implemented) actions no longer
    satisfy the plan and implementation guards: a new action must be planned and done."""
    ref = (await manual(client))["reference"]
    await step(client, ref, "triaged")
    await step(client, ref, "contained", containment="fallback off")
    await step(client, ref, "cause_analysed", root_cause_method="other", root_cause="drift")
    first = await add_action(client, ref)
    assert (await step(client, ref, "action_planned")).status_code == 200
    await implement(client, first)
    assert (await step(client, ref, "action_implemented")).status_code == 200
    assert (await step(client, ref, "effectiveness_review", reviewer="rita")).status_code == 200
    back = await step(client, ref, "cause_analysed", review_result="not_effective")
    assert back.status_code == 200

    refused = await step(client, ref, "action_planned")
    assert refused.status_code == 409, refused.text
    assert "new corrective action" in refused.json()["detail"]
    assert back.json()["action_plan"] == 2
    second = await add_action(client, ref, owner="oscar")
    shown = (await client.get(f"/v1/nonconformities/{ref}", headers=QM)).json()
    assert [(a["id"], a["action_plan"]) for a in shown["actions"]] == [(first, 1), (second, 2)]
    assert (await step(client, ref, "action_planned")).status_code == 200
    refused = await step(client, ref, "action_implemented")
    assert refused.status_code == 409 and "1 corrective action(s) not implemented" in refused.text
    await implement(client, second)
    assert (await step(client, ref, "action_implemented")).status_code == 200
    assert (await step(client, ref, "effectiveness_review", reviewer="rita")).status_code == 200
    closed = await step(client, ref, "closed", review_result="confirmed")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
