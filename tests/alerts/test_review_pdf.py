"""The management review page printed to PDF by a real browser (Debian's Chromium driven by
Playwright): every section's heading and the charts are on the printed pages, the period form
and links are not."""

from __future__ import annotations

import shutil
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from pypdf import PdfReader

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.auth import Role, issue_token
from tests.alerts import review_fixture
from tests.deployments import serve_in_thread

SECRET = "p" * 32
SECTIONS = (
    "Management review",
    "Nonconformities",
    "Time to contain and to close",
    "Corrective actions",
    "Effectiveness of actions",
    "Objective attainment",
    "Changes to objectives",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: `make system-deps` installs Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


@pytest.fixture
def alerts_url(tmp_path: Path) -> Iterator[str]:
    url = review_fixture.database("sqlite", tmp_path, lambda: "")
    yield from serve_in_thread(create_app(Settings(database_url=url, auth_secret=SECRET)), "alerts")


async def test_the_review_prints_its_sections_and_charts(
    alerts_url: str, browser: Browser, tmp_path: Path
) -> None:
    token = issue_token(SECRET, "quinn", Role.QUALITY_MANAGER, 600)
    page = await browser.new_page(extra_http_headers={"Authorization": f"Bearer {token}"})
    response = await page.goto(f"{alerts_url}/review?system=credit&from=2026-03-01&to=2026-03-31")
    assert response is not None and response.status == 200
    assert await page.title() == "Watchkeeper · Management review"
    await page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

    await page.emulate_media(media="print")
    for name in SECTIONS:
        assert await page.get_by_role("heading", name=name, exact=True).is_visible(), name
    assert not await page.locator("form.period").is_visible()  # no form on paper
    for chart in ("chart-raised", "chart-backlog", "chart-attainment"):
        box = await page.locator(f"svg#{chart}").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 50, chart
    bars = page.locator("svg#chart-raised rect")
    assert await bars.count() == 4  # A, B, D and G raised on four days

    pdf = tmp_path / "review.pdf"
    await page.pdf(path=str(pdf), format="A4", print_background=True)
    printed = PdfReader(pdf)
    words = " ".join((p.extract_text() or "") for p in printed.pages)
    words = " ".join(unicodedata.normalize("NFKC", words).split())  # ligatures (ﬀ) undone
    for name in SECTIONS:
        assert name in words, name
    for caption in (
        "Raised per day, by classification",
        "Open at the end of each day, by state",
        "Objective attainment · met breached",
    ):
        assert caption in words, caption
    assert "credit / acc" in words  # the attainment chart's own label, drawn in the SVG
    assert "Show" not in words.split() and "Evidence pack (zip)" not in words
    assert len(printed.pages) >= 2
