"""shared.auth: signed user tokens, the role dependency, open mode, ingest keys."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from shared.auth import (
    OPEN_PRINCIPAL,
    Principal,
    Role,
    TokenError,
    generate_api_key,
    hash_api_key,
    issue_token,
    key_matches,
    require_roles,
    service_headers,
    verify_token,
)
from shared.settings import CommonSettings

SECRET = "0123456789abcdef-shared-secret"


def test_a_token_names_its_subject_and_role() -> None:
    token = issue_token(SECRET, "alice@example.org", Role.QUALITY_MANAGER, 60)
    assert verify_token(SECRET, token) == Principal("alice@example.org", Role.QUALITY_MANAGER)
    assert verify_token(SecretStr(SECRET), token).role is Role.QUALITY_MANAGER


def test_forged_tampered_expired_and_malformed_tokens_are_refused() -> None:
    token = issue_token(SECRET, "bob", Role.AUDITOR, 60)
    with pytest.raises(TokenError, match="signature"):
        verify_token("another-secret-0123456789", token)
    prefix, payload, signature = token.split(".")
    admin = issue_token(SECRET, "bob", Role.ADMIN, 60).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, f"{prefix}.{admin}.{signature}")
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, now=time.time() + 61)
    for garbage in ("", "wk_key", "wk1.abc", "wk1.a.b.c", f"{prefix}.{payload}.é"):
        with pytest.raises(TokenError):
            verify_token(SECRET, garbage)


def test_secrets_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        issue_token("short", "alice", Role.ADMIN, 60)


def test_ingest_keys_are_stored_as_hashes() -> None:
    key, digest = generate_api_key()
    assert key.startswith("wk_") and digest == hash_api_key(key) and key not in digest
    assert key_matches(key, ["0" * 64, digest])
    assert not key_matches(key + "x", [digest])


def service_app(secret: str | None) -> FastAPI:
    app = FastAPI()
    app.state.settings = CommonSettings(auth_secret=secret)

    @app.get("/read")
    async def read(user: Annotated[Principal, Depends(require_roles())]) -> dict[str, object]:
        return {"subject": user.subject, "role": user.role, "auth": user.authenticated}

    @app.post("/write")
    async def write(
        user: Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.ML_ENGINEER))],
    ) -> dict[str, str | None]:
        return {"subject": user.subject}

    return app


async def call(app: FastAPI, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.request(method, path, headers=headers)


async def test_require_roles() -> None:
    app = service_app(SECRET)
    auditor = issue_token(SECRET, "ada", Role.AUDITOR, 60)
    engineer = issue_token(SECRET, "eve", Role.ML_ENGINEER, 60)
    assert (await call(app, "GET", "/read", None)).status_code == 401
    assert (await call(app, "GET", "/read", "wk_not-a-token")).status_code == 401
    response = await call(app, "GET", "/read", auditor)
    assert response.json() == {"subject": "ada", "role": "auditor", "auth": True}
    response = await call(app, "POST", "/write", auditor)
    assert response.status_code == 403
    assert "'auditor' may not" in response.json()["detail"]
    assert (await call(app, "POST", "/write", engineer)).json() == {"subject": "eve"}


async def test_open_mode_admits_everything() -> None:
    app = service_app(None)
    response = await call(app, "POST", "/write", None)
    assert response.status_code == 200
    assert OPEN_PRINCIPAL.authenticated is False


def test_service_headers_carry_a_read_only_token() -> None:
    assert service_headers(None, "evaluator") == {}
    header = service_headers(SecretStr(SECRET), "evaluator")["Authorization"]
    principal = verify_token(SECRET, header.removeprefix("Bearer "))
    assert principal == Principal("service:evaluator", Role.AUDITOR)
