"""The quality manager's web UI over HTTP (no browser): sign-in with a token kept in a cookie,
role-aware pages, forms that write through the same crud functions as the JSON API (the
subject lands in the log), guards shown as the reasons a step is disabled, the queue's
filters, sorting, paging and counts, the record's evidence chart and the system page."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.alerts.app import create_app
from services.alerts.settings import Settings
from services.alerts.web import COOKIE
from shared.auth import Role, issue_token
from shared.contracts import (
    EvaluationStatus,
    SystemSnapshot,
    encode,
)
from tests.factories import accuracy_snapshot, make_evaluation

SECRET = "w" * 32
FIRST_WINDOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def token(role: Role, subject: str = "quinn", *, expired: bool = False) -> str:
    issued = datetime.now(UTC).timestamp() - (1200 if expired else 0)
    return issue_token(SECRET, subject, role, 600, now=issued)


def bearer(role: Role, subject: str = "quinn") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, subject)}"}


def system_snapshot(system_id: str = "credit") -> SystemSnapshot:
    return accuracy_snapshot(
        system_id,
        name="Credit scoring",
        system_owner="ml@example.org",
        severity="major",
        owner="owen@example.org",
        rationale="Wrong credit decisions harm applicants",
        references=["ISO/IEC 42001 6.2", "A.6.2.6"],
        changed_by="alice",
        change_reason="first version",
    )


@dataclass
class Alerts:
    app: FastAPI
    client: httpx.AsyncClient

    async def sign_in(self, role: Role, subject: str = "quinn") -> None:
        response = await self.client.post("/login", data={"token": token(role, subject)})
        assert response.status_code == 303, response.text

    async def evaluations(self, *statuses: EvaluationStatus, system_id: str = "credit") -> None:
        bus = self.app.state.bus
        values = [0.9 if s is EvaluationStatus.PASS else 0.5 for s in statuses]
        await bus.producer.send_many(
            bus.topics.evaluations,
            [
                (
                    system_id.encode(),
                    encode(
                        make_evaluation(
                            status,
                            window,
                            evaluation_id=f"{system_id}-e{window}",
                            system_id=system_id,
                            first_window=FIRST_WINDOW,
                            value=value,
                        )
                    ),
                )
                for window, (status, value) in enumerate(zip(statuses, values, strict=True))
            ],
        )

    async def records(self, wanted: int = 1, **params: Any) -> list[dict[str, Any]]:
        for _ in range(500):
            response = await self.client.get(
                "/v1/nonconformities", params=params, headers=bearer(Role.AUDITOR)
            )
            if len(response.json()) >= wanted:
                return list(response.json())
            await asyncio.sleep(0.02)
        raise AssertionError(f"fewer than {wanted} records")

    async def page(self, path: str) -> str:
        response = await self.client.get(path)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.text

    async def post_form(self, path: str, page: str, **fields: str) -> httpx.Response:
        return await self.client.post(path, data={"csrf": csrf_of(page), **fields})

    async def log(self, subject: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/v1/log", params={"subject": subject, "limit": 1000}, headers=bearer(Role.AUDITOR)
        )
        return list(response.json())


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no form"
    return found.group(1)


@pytest.fixture
async def alerts(tmp_path: Path) -> AsyncIterator[Alerts]:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'alerts.db'}", auth_secret=SECRET)
    )
    async with app.router.lifespan_context(app):
        bus = app.state.bus
        await bus.producer.send(bus.topics.registry, encode(system_snapshot()), key=b"credit")
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            yield Alerts(app, client)


async def manual(alerts: Alerts, **fields: Any) -> dict[str, Any]:
    body = {
        "source": "audit",
        "system_id": "credit",
        "title": "fallback model not monitored",
        "classification": "major",
        **fields,
    }
    response = await alerts.client.post(
        "/v1/nonconformities", json=body, headers=bearer(Role.QUALITY_MANAGER, "api")
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# --- sign-in --------------------------------------------------------------------------------


async def test_pages_send_a_visitor_without_a_token_to_sign_in(alerts: Alerts) -> None:
    response = await alerts.client.get("/", params={"state": "raised"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?" + urllib.parse.urlencode(
        {"next": "/?state=raised"}
    )
    page = await alerts.page("/login?next=/")
    assert '<label for="token">User token</label>' in page
    assert "watchkeeper tokens issue" in page


async def test_signing_in_keeps_the_token_in_an_http_only_cookie_until_sign_out(
    alerts: Alerts,
) -> None:
    forged = issue_token("f" * 32, "mallory", Role.ADMIN, 600)
    refused = await alerts.client.post("/login", data={"token": forged})
    assert refused.status_code == 401 and "token: token signature is not valid" in refused.text
    assert COOKIE not in alerts.client.cookies

    signed_in = await alerts.client.post(
        "/login", data={"token": token(Role.QUALITY_MANAGER), "next": "/?show=all"}
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/?show=all"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "Signed in as <strong>quinn</strong> (quality manager)" in await alerts.page("/")

    signed_out = await alerts.client.post("/logout", data={})
    assert signed_out.status_code == 303
    assert COOKIE not in alerts.client.cookies
    assert (await alerts.client.get("/")).status_code == 303


async def test_sign_in_only_returns_to_a_page_of_this_app(alerts: Alerts) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = await alerts.client.post(
            "/login", data={"token": token(Role.AUDITOR), "next": target}
        )
        assert response.headers["location"] == "/", target


async def test_a_form_posted_with_an_expired_session_goes_back_to_sign_in(
    alerts: Alerts,
) -> None:
    nc = await manual(alerts)
    alerts.client.cookies.set(COOKIE, token(Role.QUALITY_MANAGER, expired=True))
    response = await alerts.client.post(
        f"/nonconformities/{nc['reference']}/transitions", data={"to": "triaged"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login?expired=1"
    assert "Your session has expired" in await alerts.page("/login?expired=1")
    assert (await alerts.client.get(f"/v1/nonconformities/{nc['id']}")).status_code == 401


async def test_the_json_api_does_not_take_writes_on_the_cookie(alerts: Alerts) -> None:
    """A browser sends the cookie by itself; the API's writes need the Authorization header."""
    await alerts.sign_in(Role.QUALITY_MANAGER)
    response = await alerts.client.post(
        "/v1/nonconformities",
        json={"source": "audit", "system_id": "credit", "title": "x", "classification": "minor"},
    )
    assert response.status_code == 401
    assert (await alerts.client.get("/v1/nonconformities")).status_code == 200  # reads do


async def test_a_form_without_the_session_csrf_field_is_refused(alerts: Alerts) -> None:
    nc = await manual(alerts)
    await alerts.sign_in(Role.QUALITY_MANAGER)
    response = await alerts.client.post(
        f"/nonconformities/{nc['reference']}/transitions",
        data={"to": "triaged", "csrf": "0" * 32},
    )
    assert response.status_code == 403 and "csrf" in response.text
    assert (await alerts.records(source="audit"))[0]["status"] == "raised"


# --- roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.SRE])
async def test_readers_see_no_forms_and_cannot_post_them(alerts: Alerts, role: Role) -> None:
    nc = await manual(alerts)
    await alerts.sign_in(Role.QUALITY_MANAGER)
    writer_page = await alerts.page(f"/nonconformities/{nc['reference']}")
    await alerts.sign_in(role, "riley")
    page = await alerts.page(f"/nonconformities/{nc['reference']}")
    assert page.count('method="post"') == 1  # signing out
    assert 'action="/logout"' in page
    assert "Accept the record (triage)" in page and "your role reads" in page
    response = await alerts.client.post(
        f"/nonconformities/{nc['reference']}/transitions",
        data={"to": "triaged", "csrf": csrf_of(page)},
    )
    assert response.status_code == 403 and "reads only" in response.text
    assert 'method="post"' in writer_page and writer_page.count('method="post"') > 3


# --- the lifecycle through forms ------------------------------------------------------------


async def test_a_quality_manager_works_a_monitoring_record_through_the_forms(
    alerts: Alerts,
) -> None:
    await alerts.evaluations(EvaluationStatus.BREACH, EvaluationStatus.BREACH)
    [record] = await alerts.records(system_id="credit")
    for _ in range(100):
        [record] = await alerts.records(system_id="credit")
        if record["occurrences"] == 2:
            break
        await asyncio.sleep(0.02)
    ref = record["reference"]
    url = f"/nonconformities/{ref}"
    await alerts.sign_in(Role.QUALITY_MANAGER)

    page = await alerts.page(url)
    assert "Wrong credit decisions harm applicants" in page  # the objective's rationale
    assert "ISO/IEC 42001 6.2, A.6.2.6" in page and "owen@example.org" in page
    assert "Objective acc, version 1" in page

    async def step(to: str, **fields: str) -> httpx.Response:
        current = await alerts.page(url)
        return await alerts.post_form(f"{url}/transitions", current, to=to, **fields)

    triaged = await step("triaged", owner="olga")
    assert triaged.status_code == 303
    assert triaged.headers["location"] == f"{url}?done=transition#lifecycle"
    refused = await step("contained", containment="  ")
    assert refused.status_code == 409
    assert "missing step: containment" in refused.text and 'role="alert"' in refused.text
    assert (await step("contained", containment="scores routed to manual review")).is_redirect
    assert (
        await step(
            "cause_analysed",
            root_cause_method="five_whys",
            root_cause="the income feature changed units",
            contributing_causes="no schema check\nno canary",
        )
    ).is_redirect

    page = await alerts.page(url)
    # the guard says why the plan cannot be confirmed yet, and the button is disabled
    plan = re.search(r'<form [^>]*id="step-action_planned".*?</form>', page, re.S)
    assert plan is not None
    assert "<fieldset disabled>" in plan.group(0)
    assert "no action plan without a root cause and at least one corrective action" in plan.group(0)
    added = await alerts.post_form(
        f"{url}/actions",
        page,
        description="add a unit check on income",
        type="corrective",
        owner="olivia",
        due="2030-01-31",
    )
    assert added.status_code == 303 and added.headers["location"].endswith("#actions")
    assert (await step("action_planned")).is_redirect

    page = await alerts.page(url)
    [action] = (
        await alerts.client.get(
            "/v1/actions", params={"nonconformity_id": record["id"]}, headers=bearer(Role.SRE)
        )
    ).json()
    assert action["due_at"].startswith("2030-01-31T23:59:59")
    no_evidence = await alerts.post_form(
        f"/actions/{action['id']}", page, status="implemented", owner="olivia"
    )
    assert no_evidence.status_code == 409 and "needs at least one evidence link" in no_evidence.text
    assert 'value="implemented" selected' in no_evidence.text  # the user's choice is kept
    done = await alerts.post_form(
        f"/actions/{action['id']}",
        page,
        status="implemented",
        evidence_link="https://git.example.org/pr/42",
    )
    assert done.status_code == 303
    assert (await step("action_implemented")).is_redirect
    owner_reviews = await step("effectiveness_review", reviewer="olivia")
    assert owner_reviews.status_code == 409 and "owns a corrective action" in owner_reviews.text

    page = await alerts.page(f"{url}?done=transition")
    assert 'id="record-state">action implemented<' in page
    assert "The step was recorded." in page
    assert "watching the objective since" in page  # automatic effectiveness evidence
    entries = await alerts.log(record["id"])
    by_quinn = [(e["kind"], e["after"].get("status")) for e in entries if e["actor"] == "quinn"]
    assert by_quinn == [
        ("transition", "triaged"),
        ("transition", "contained"),
        ("transition", "cause_analysed"),
        ("action_planned", "planned"),
        ("transition", "action_planned"),
        ("action_updated", "implemented"),
        ("effectiveness_watch", "watching"),
        ("transition", "action_implemented"),
    ]
    for entry in entries[-4:]:
        assert f">{entry['seq']}</td>" in page  # the record's log entries are on the page
    verify = await alerts.client.get("/v1/log/verify", headers=bearer(Role.AUDITOR))
    assert verify.json()["ok"] is True


async def test_the_root_cause_can_be_revised_while_actions_are_planned(alerts: Alerts) -> None:
    nc = await manual(alerts)
    headers = bearer(Role.QUALITY_MANAGER, "api")
    for to, fields in (
        ("triaged", {}),
        ("contained", {"containment": "paused"}),
        ("cause_analysed", {"root_cause_method": "fishbone", "root_cause": "first idea"}),
    ):
        response = await alerts.client.post(
            f"/v1/nonconformities/{nc['id']}/transitions",
            json={"to": to, **fields},
            headers=headers,
        )
        assert response.status_code == 200, response.text
    await alerts.sign_in(Role.QUALITY_MANAGER)
    url = f"/nonconformities/{nc['reference']}"
    page = await alerts.page(url)
    empty = await alerts.post_form(
        f"{url}/analysis", page, root_cause_method="other", root_cause=" "
    )
    assert empty.status_code == 422 and "root_cause: the root cause cannot be empty" in empty.text
    revised = await alerts.post_form(
        f"{url}/analysis",
        page,
        root_cause_method="five_whys",
        root_cause="second, better idea",
        contributing_causes="a\nb",
    )
    assert revised.status_code == 303
    [entry] = [e for e in await alerts.log(nc["id"]) if e["kind"] == "analysis_revised"]
    assert entry["actor"] == "quinn"
    assert entry["before"]["root_cause"] == "first idea"
    assert entry["after"] == {
        "root_cause_method": "five_whys",
        "root_cause": "second, better idea",
        "contributing_causes": ["a", "b"],
    }


async def test_rejecting_and_reclassifying_need_a_reason(alerts: Alerts) -> None:
    nc = await manual(alerts)
    await alerts.sign_in(Role.ADMIN, "ada")
    url = f"/nonconformities/{nc['reference']}"
    page = await alerts.page(url)
    no_reason = await alerts.post_form(f"{url}/classification", page, classification="minor")
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    assert (
        await alerts.post_form(
            f"{url}/classification", page, classification="minor", reason="low impact"
        )
    ).status_code == 303
    rejected = await alerts.post_form(
        f"{url}/transitions", page, to="rejected", rejection="false_positive"
    )
    assert rejected.status_code == 409 and "a reason" in rejected.text
    assert (
        await alerts.post_form(
            f"{url}/transitions", page, to="rejected", rejection="false_positive", reason="test"
        )
    ).status_code == 303
    page = await alerts.page(url)
    assert "This record is <strong>rejected</strong>" in page
    assert 'id="record-state">rejected<' in page
    kinds = [(e["kind"], e["actor"]) for e in await alerts.log(nc["id"])]
    assert kinds[-2:] == [("classification", "ada"), ("transition", "ada")]


# --- the queue ------------------------------------------------------------------------------


def queue_rows(page: str) -> list[str]:
    return re.findall(r'<tr id="nc-[0-9a-f]+" data-reference="([^"]+)"', page)


async def test_the_queue_filters_sorts_pages_and_counts_per_state(alerts: Alerts) -> None:
    made = []
    for i in range(30):
        made.append(
            await manual(
                alerts,
                system_id="credit" if i % 3 else "fraud",
                classification=("major", "minor", "observation")[i % 3],
                owner="olga" if i % 2 else "oscar",
            )
        )
    for nc in made[:4]:
        response = await alerts.client.post(
            f"/v1/nonconformities/{nc['id']}/transitions",
            json={"to": "triaged"},
            headers=bearer(Role.QUALITY_MANAGER),
        )
        assert response.status_code == 200
    await alerts.sign_in(Role.AUDITOR, "aud")

    page = await alerts.page("/")
    assert len(queue_rows(page)) == 25 and "Page 1 of 2" in page
    assert re.search(r'data-state="raised">raised <b>26</b>', page)
    assert re.search(r'data-state="triaged">triaged <b>4</b>', page)
    second = await alerts.page("/?page=2")
    assert len(queue_rows(second)) == 5
    assert set(queue_rows(page)) | set(queue_rows(second)) == {nc["reference"] for nc in made}

    page = await alerts.page("/?system=credit&classification=minor&owner=olga")
    expected = [
        nc["reference"]
        for nc in made
        if nc["system_id"] == "credit" and nc["classification"] == "minor" and nc["owner"] == "olga"
    ]
    assert sorted(queue_rows(page)) == sorted(expected) and expected
    assert '<option value="credit" selected>' in page  # the filters stay as chosen
    page = await alerts.page("/?state=triaged&sort=reference&dir=asc")
    assert queue_rows(page) == sorted(nc["reference"] for nc in made[:4])
    assert 'aria-sort="ascending"' in page
    page = await alerts.page("/?sort=reference&dir=desc")
    assert queue_rows(page)[0] == max(nc["reference"] for nc in made)
    # the record page links back to the queue with the same filters
    link = re.search(r'href="(/nonconformities/[^"]+\?from=[^"]+)"', page)
    assert link is not None
    record = await alerts.page(link.group(1).replace("&amp;", "&"))
    back = re.search(r'<a href="(/\?[^"]*)">← Back to the queue', record)
    assert back is not None and "sort=reference&amp;dir=desc" in back.group(1)
    assert "No nonconformities match" in await alerts.page("/?overdue=1")
    assert "No nonconformities match" in await alerts.page("/?age=30")
    bad = await alerts.client.get("/?state=lost")
    assert bad.status_code == 422 and "state: unknown value 'lost'" in bad.text
    bad = await alerts.client.get("/?age=-1")
    assert bad.status_code == 422 and "age" in bad.text


# --- evidence and systems -------------------------------------------------------------------


async def test_the_record_page_charts_every_window_and_the_system_page_each_objective(
    alerts: Alerts,
) -> None:
    P, B = EvaluationStatus.PASS, EvaluationStatus.BREACH
    await alerts.evaluations(P, P, B, B, P, B)
    [record] = await alerts.records(system_id="credit")
    for _ in range(200):
        [record] = await alerts.records(system_id="credit")
        if record["occurrences"] == 3:
            break
        await asyncio.sleep(0.02)
    assert record["occurrences"] == 3
    await alerts.sign_in(Role.SRE, "sam")
    page = await alerts.page(f"/nonconformities/{record['reference']}")
    chart = re.search(r'<svg class="chart" id="evidence-chart".*?</svg>', page, re.S)
    assert chart is not None
    svg = chart.group(0)
    assert svg.count('class="point breach"') == 3 and svg.count('class="point pass"') == 3
    assert svg.count('<circle class="occurrence"') == 3
    assert svg.count('<path class="threshold"') == 1
    assert "6 windows" in svg and "3 breaching" in svg and "threshold ≥ 0.8" in svg
    rows = re.findall(r"<td class=\"num\">0\.[59]</td>", page)
    assert len(rows) >= 6  # the chart's numbers are on the page as a table too
    occurrence_links = re.findall(r'href="(/nonconformities/[^/]+/occurrences/\d+)"', page)
    assert len(occurrence_links) == 3
    evidence = await alerts.page(occurrence_links[0])
    assert "credit-e2" in evidence and "Evidence of an occurrence" in evidence

    system = await alerts.page("/systems/credit")
    assert "Credit scoring" in system and "acc" in system
    assert system.count('<svg class="chart compact"') == 1
    assert "Wrong credit decisions harm applicants" in system
    assert f">{record['reference']}</a>" in system
    systems = await alerts.page("/systems")
    assert 'href="/systems/credit"' in systems
    missing = await alerts.client.get("/systems/nowhere")
    assert missing.status_code == 404 and "no AI system &#39;nowhere&#39;" in missing.text
    missing = await alerts.client.get("/nonconformities/NC-1999-0001")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text
    missing = await alerts.client.get(f"/nonconformities/{record['reference']}/occurrences/999")
    assert missing.status_code == 404 and "no occurrence 999" in missing.text


async def test_links_and_the_cookie_stay_under_the_mount_path(tmp_path: Path) -> None:
    """In the embedded platform the alerts app is mounted at /alerts."""
    alerts_app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'alerts.db'}", auth_secret=SECRET)
    )
    parent = FastAPI()
    parent.mount("/alerts", alerts_app)
    async with alerts_app.router.lifespan_context(alerts_app):
        transport = httpx.ASGITransport(parent)
        async with httpx.AsyncClient(transport=transport, base_url="http://wk") as client:
            response = await client.get("/alerts/")
            assert response.headers["location"] == "/alerts/login?next=%2Falerts%2F"
            login = await client.get("/alerts/login")
            assert 'action="/alerts/login"' in login.text
            signed_in = await client.post(
                "/alerts/login", data={"token": token(Role.QUALITY_MANAGER)}
            )
            assert signed_in.headers["location"] == "/alerts/"
            assert "path=/alerts/" in signed_in.headers["set-cookie"].lower()
            page = await client.get("/alerts/")
            assert page.status_code == 200
            assert 'href="/alerts/systems"' in page.text and 'href="/alerts/review"' in page.text


async def test_only_the_sign_in_form_is_posted_without_a_token(tmp_path: Path) -> None:
    """The request guard lets the sign-in form through without a token, its body limit still
    applies, and every other form still needs credentials."""
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
            auth_secret=SECRET,
            max_body_bytes=4096,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            huge = await client.post("/login", data={"token": "x" * 10_000})
            assert huge.status_code == 413 and "4096" in huge.text
            other = await client.post("/logout", data={})
            assert other.status_code == 401
            good = await client.post("/login", data={"token": token(Role.AUDITOR)})
            assert good.status_code == 303


async def test_the_evidence_page_downloads_the_pack_with_the_session(alerts: Alerts) -> None:
    await manual(alerts)
    await alerts.sign_in(Role.AUDITOR, "aud")
    page = await alerts.page("/evidence")
    assert 'action="/v1/evidence"' in page and '<option value="credit">' in page
    today = datetime.now(UTC).date()
    pack = await alerts.client.get(
        "/v1/evidence",
        params={"system": "credit", "from": str(today - timedelta(days=30)), "to": str(today)},
    )
    assert pack.status_code == 200 and pack.headers["content-type"] == "application/zip"
    await alerts.sign_in(Role.SRE, "sam")
    page = await alerts.page("/evidence")
    assert 'action="/v1/evidence"' not in page and "does not export the pack" in page
