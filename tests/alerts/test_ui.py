"""The nonconformities page, in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from shared.auth import Role
from shared.contracts import EvaluationStatus
from tests.deployments import Deployment, monitor_one_window
from tests.factories import (
    make_objective,
    make_system,
    past_window_start,
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: `make system-deps` installs Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def test_quality_manager_sees_the_nonconformity(
    deployment: Deployment, browser: Browser, tmp_path: Path
) -> None:
    page = await browser.new_page(extra_http_headers=deployment.as_user(Role.QUALITY_MANAGER))
    alerts_page = deployment.url("alerts", "/")
    await page.goto(alerts_page)
    assert await page.title() == "Watchkeeper · Nonconformities"

    system = make_system(name="Loan approval")
    objective = make_objective(threshold=0.8, severity="major")
    start = past_window_start(60)
    async with httpx.AsyncClient(timeout=30) as client:
        result = await monitor_one_window(
            deployment, client, system=system, objective=objective, actuals=[1, 0] * 10, start=start
        )
    assert result.status is EvaluationStatus.BREACH

    row = page.locator("tr", has_text=system["id"])
    for _ in range(50):
        await page.goto(alerts_page)
        if await row.count():
            break
        await page.wait_for_timeout(200)
    await page.screenshot(path=str(tmp_path / "nonconformities.png"), full_page=True)
    cells = await row.locator("td").all_inner_texts()
    assert cells[1:] == [
        system["id"],
        f"{objective['id']} v1",
        "accuracy",
        "0.5000",
        "ge 0.8",
        "major",
        "raised",
        "1",
        "breaching",
    ]
    assert await row.locator("td.major").count() == 1
