"""The quality manager's web UI in a real browser (Debian's Chromium driven by Playwright,
headless, no browser download): a breach raised by the platform is found in the queue,
opened, charted and worked through its lifecycle with the forms; an auditor sees no forms.
Screenshots go to the test's own tmp_path."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from shared.auth import Role, issue_token
from shared.contracts import EvaluationStatus
from tests.deployments import SERVICES, Deployment, monitor_one_window
from tests.embedded.harness import embedded
from tests.factories import make_objective, make_system, past_window_start

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1366, "height": 800}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: `make system-deps` installs Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def sign_in(page: Page, deployment: Deployment, role: Role, subject: str) -> None:
    """Through the sign-in form, as a person does: paste the token, press Enter."""
    assert deployment.auth_secret is not None
    await page.goto(deployment.url("alerts", "/"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("User token").fill(
        issue_token(deployment.auth_secret, subject, role, 3600)
    )
    await page.get_by_label("User token").press("Enter")
    await expect(page.get_by_text(f"Signed in as {subject}")).to_be_visible()


async def open_in_queue(page: Page, deployment: Deployment, system_id: str) -> None:
    """Filter the queue by the system (the record appears once alerts consumed the breach)."""
    for _ in range(100):
        await page.goto(deployment.url("alerts", "/"))
        options = await page.locator("#f-system option").all_inner_texts()
        if system_id in options:
            await page.get_by_label("AI system").select_option(system_id)
            await page.get_by_label("Classification").select_option("major")
            await page.get_by_role("button", name="Apply filters").click()
            if await page.locator("#queue tbody tr").count():
                return
        await page.wait_for_timeout(200)
    raise AssertionError(f"no record of {system_id} in the queue")


async def test_a_quality_manager_works_a_record_in_the_browser(
    deployment: Deployment, browser: Browser, tmp_path: Path
) -> None:
    system = make_system(name="Loan approval")
    objective = make_objective(threshold=0.8, severity="major")
    async with httpx.AsyncClient(timeout=30) as client:
        result = await monitor_one_window(
            deployment,
            client,
            system=system,
            objective=objective,
            actuals=[1, 0] * 10,
            start=past_window_start(60),
        )
    assert result.status is EvaluationStatus.BREACH

    page = await browser.new_page(viewport=LAPTOP)
    subject = "anonymous"
    if deployment.auth_secret is not None:
        subject = "quinn@example.org"
        await sign_in(page, deployment, Role.QUALITY_MANAGER, subject)
    else:
        await page.goto(deployment.url("alerts", "/"))
        await expect(page.get_by_role("note")).to_contain_text("Open mode")

    await open_in_queue(page, deployment, system["id"])
    assert f"system={system['id']}" in page.url and "classification=major" in page.url
    rows = page.locator("#queue tbody tr")
    await expect(rows).to_have_count(1)
    await page.reload()  # the filters are in the address: a reload keeps the place
    await expect(page.get_by_label("AI system")).to_have_value(system["id"])
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("raised")
    await page.screenshot(path=str(tmp_path / "1-queue.png"), full_page=True)

    await rows.first.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("NC-")
    await expect(page.locator("#record-state")).to_have_text("raised")
    await expect(page.get_by_text("wrong decisions harm applicants")).to_be_visible()
    chart = page.locator("svg#evidence-chart")
    await expect(chart).to_be_visible()
    await expect(chart.locator("path.threshold:not(.key)")).to_have_count(1)
    await expect(chart.locator("path.point.breach:not(.key)")).to_have_count(1)
    await expect(chart.locator("circle.occurrence:not(.key)")).to_have_count(1)
    await expect(page.locator("#occurrences tbody tr")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "2-record-raised.png"), full_page=True)

    async def step(button: str, state: str) -> None:
        await page.get_by_role("button", name=button, exact=True).click()
        await expect(page.locator("#record-state")).to_have_text(state)
        await expect(page.get_by_role("status")).to_have_text("The step was recorded.")

    await step("Accept the record (triage)", "triaged")
    # containment with the keyboard only: type, Tab past the optional field, Enter
    await page.get_by_label("Containment (what was done to contain it)").fill(
        "Loan decisions of this model go to manual review"
    )
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#record-state")).to_have_text("contained")

    await page.get_by_label("Method").select_option("five_whys")
    await page.get_by_label("Root cause", exact=True).fill("the upstream income feed changed units")
    await step("Record the root cause", "cause analysed")

    plan = page.get_by_role("button", name="Confirm the action plan")
    await expect(plan).to_be_disabled()
    await expect(page.locator("#step-action_planned-why")).to_contain_text(
        "at least one corrective action"
    )
    await page.get_by_label("Description").fill("Check the units of income at ingest")
    await page.locator("#na-owner").fill("olivia@example.org")
    await page.get_by_label("Due date").fill(
        (datetime.now(UTC) + timedelta(days=14)).date().isoformat()
    )
    await page.get_by_role("button", name="Plan the action").click()
    await expect(page.get_by_role("status")).to_have_text("The corrective action was planned.")
    await step("Confirm the action plan", "action planned")

    update = page.locator("form", has=page.get_by_role("button", name="Update the action"))
    await update.get_by_label("Status").select_option("implemented")
    await update.get_by_label("Evidence link").fill("https://git.example.org/loans/pull/42")
    await update.get_by_role("button", name="Update the action").click()
    await expect(page.get_by_role("status")).to_have_text("The corrective action was updated.")
    await step("Confirm the actions are implemented", "action implemented")

    await expect(page.locator("#effectiveness-evidence")).to_contain_text("watching")
    log = page.locator("#log-entries tbody tr")
    kinds = [await row.get_attribute("data-kind") for row in await log.all()]
    assert kinds == [
        "raised",
        "transition",
        "transition",
        "transition",
        "action_planned",
        "transition",
        "action_updated",
        "effectiveness_watch",
        "transition",
    ]
    mine = page.locator("#log-entries tbody tr", has_text=subject)
    await expect(mine).to_have_count(8)
    await expect(log.last).to_contain_text("action implemented")
    await page.screenshot(path=str(tmp_path / "3-record-implemented.png"), full_page=True)

    await page.get_by_role("link", name=system["id"]).first.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Loan approval")
    await expect(page.locator("svg.chart.compact")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "4-system.png"), full_page=True)


@pytest.fixture
async def embedded_with_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Deployment]:
    """The embedded platform with credentials on, as a user turns them on (environment)."""
    secret = secrets.token_urlsafe(32)
    for name in SERVICES:
        monkeypatch.setenv(f"WK_{name.upper()}_AUTH_SECRET", secret)
    async with embedded(tmp_path / "platform", auth_secret=secret) as deployment:
        yield deployment


async def test_an_auditor_sees_no_forms(
    embedded_with_credentials: Deployment, browser: Browser, tmp_path: Path
) -> None:
    deployment = embedded_with_credentials
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            deployment.url("alerts", "/v1/nonconformities"),
            json={
                "source": "audit",
                "system_id": "loans",
                "title": "No monitoring of the fallback model",
                "classification": "major",
            },
            headers=deployment.as_user(Role.QUALITY_MANAGER),
        )
        assert response.status_code == 201, response.text
    reference = response.json()["reference"]

    page = await browser.new_page(viewport=LAPTOP)
    await sign_in(page, deployment, Role.AUDITOR, "audrey@example.org")
    await expect(page.locator("#queue tbody tr")).to_have_count(1)
    await page.get_by_role("link", name=reference).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(reference)
    await expect(page.get_by_text("your role reads")).to_be_visible()
    await expect(page.locator("main form")).to_have_count(0)
    await expect(page.locator("form[method=post]")).to_have_count(1)  # signing out
    await expect(page.get_by_role("button")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "auditor-record.png"), full_page=True)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
