"""Who may read nonconformities: every role with a valid token; nobody without one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.auth import Role, issue_token

SECRET = "s" * 32


@pytest.mark.parametrize("path", ["/v1/nonconformities", "/v1/nonconformities/nope"])
async def test_reading_needs_a_valid_token(path: str, tmp_path: Path) -> None:
    """(The web UI's pages send a visitor without a token to sign in: tests/alerts/test_web.py.)"""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", auth_secret=SECRET))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://alerts") as client:
            anonymous = await client.get(path)
            assert anonymous.status_code == 401
            forged = issue_token("x" * 32, "mallory", Role.ADMIN, 60)
            response = await client.get(path, headers={"Authorization": f"Bearer {forged}"})
            assert response.status_code == 401
            for role in Role:
                token = issue_token(SECRET, "someone", role, 60)
                response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == (404 if path.endswith("nope") else 200), role
            assert (await client.get("/healthz")).status_code == 200  # never authenticated
