from __future__ import annotations

import secrets

import pytest

from tests.deployments import SERVICES


@pytest.fixture
def auth_on(monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials on for every embedded service, as a user turns them on (environment)."""
    secret = secrets.token_urlsafe(32)
    for name in SERVICES:
        monkeypatch.setenv(f"WK_{name.upper()}_AUTH_SECRET", secret)
    return secret
