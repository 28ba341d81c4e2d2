"""Credentials every service checks the same way.

Two kinds of credential, both sent as ``Authorization: Bearer <credential>``:

* **User tokens** (``wk1.<payload>.<signature>``): HMAC-SHA256-signed, carrying a subject, a
  :class:`Role` and an expiry. Any service holding the shared ``auth_secret`` (setting
  ``WK_<SERVICE>_AUTH_SECRET``) verifies them without a database or a network call; revoking
  all of them = rotating the secret. Issue one with ``watchkeeper tokens issue`` or
  :func:`issue_token`.
* **Ingest API keys** (``wk_...``): random 32-byte secrets scoped to one AI system. Only their
  SHA-256 hash is stored (registry database) and propagated (``SystemSnapshot.
  ingest_key_hashes`` on the registry topic); a key is shown once, at creation. A fast hash is
  enough because the keys are high-entropy random values, not passwords.

Use in a service (the whole API)::

    from shared.auth import Principal, Role, require_roles, bearer_token, key_matches

    Reader = Annotated[Principal, Depends(require_roles())]            # any role
    Editor = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.ML_ENGINEER))]

    @router.get("/things")
    def things(user: Reader) -> ...: ...

    # ingest: the key must belong to the event's system
    key = bearer_token(request)
    if auth_enabled(request) and (key is None or not key_matches(key, snapshot.ingest_key_hashes)):
        ...  # 401 without a key, 403 with another system's key

``require_roles`` reads the secret from ``request.app.state.settings.auth_secret``. When it is
None ("open mode", the embedded demo) nothing is checked and the dependency returns
:data:`OPEN_PRINCIPAL`; call :func:`announce_auth_mode` once at start so the service logs a
warning. /healthz, /readyz and /metrics never depend on this module. Never log a token or key.

A service calling another service's API (the evaluator fetching reference profiles) sends
:func:`service_headers`: a short-lived read-only (auditor) token it mints with the shared
secret, or no header in open mode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import orjson
from fastapi import HTTPException, Request, status
from pydantic import SecretStr

__all__ = [
    "API_KEY_PREFIX",
    "MIN_SECRET_LENGTH",
    "OPEN_PRINCIPAL",
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "TokenError",
    "announce_auth_mode",
    "auth_enabled",
    "bearer_token",
    "generate_api_key",
    "hash_api_key",
    "issue_token",
    "key_matches",
    "require_roles",
    "service_headers",
    "verify_token",
]

log = logging.getLogger(__name__)

API_KEY_PREFIX = "wk_"
TOKEN_PREFIX = "wk1."
MIN_SECRET_LENGTH = 16
SERVICE_TOKEN_TTL_S = 300.0


class Role(StrEnum):
    """What a user may do; each route names the roles it admits."""

    ADMIN = "admin"
    ML_ENGINEER = "ml_engineer"
    QUALITY_MANAGER = "quality_manager"
    SRE = "sre"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``subject`` is None only in open mode (``authenticated`` False)."""

    subject: str | None
    role: Role
    authenticated: bool = True


OPEN_PRINCIPAL = Principal(subject=None, role=Role.ADMIN, authenticated=False)
"""What every request is in open mode: unauthenticated, allowed everything."""


class TokenError(ValueError):
    """A token that is malformed, forged or expired (the message says which, never the token)."""


def _secret_bytes(secret: str | SecretStr) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if len(raw) < MIN_SECRET_LENGTH:
        raise ValueError(f"auth_secret must be at least {MIN_SECRET_LENGTH} characters")
    return raw.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, (TOKEN_PREFIX + payload).encode(), hashlib.sha256).digest())


def issue_token(
    secret: str | SecretStr, subject: str, role: Role, ttl_s: float, *, now: float | None = None
) -> str:
    """A signed token for ``subject`` acting as ``role``, valid for ``ttl_s`` seconds."""
    if not subject:
        raise ValueError("a token needs a subject")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = int(now if now is not None else time.time())
    payload = _b64(
        orjson.dumps(
            {"sub": subject, "role": Role(role).value, "iat": issued, "exp": int(issued + ttl_s)}
        )
    )
    return f"{TOKEN_PREFIX}{payload}.{_sign(_secret_bytes(secret), payload)}"


def verify_token(secret: str | SecretStr, token: str, *, now: float | None = None) -> Principal:
    """The principal a token names; raises :class:`TokenError` if it is not valid now."""
    key = _secret_bytes(secret)
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
        raise TokenError("not a Watchkeeper user token")
    payload, signature = token[len(TOKEN_PREFIX) :].split(".")
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode("utf-8", "replace")):
        raise TokenError("token signature is not valid")
    try:
        claims = orjson.loads(_unb64(payload))
        subject, role, expires = str(claims["sub"]), Role(claims["role"]), float(claims["exp"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TokenError("token payload is malformed") from exc
    if (now if now is not None else time.time()) >= expires:
        raise TokenError("token has expired")
    return Principal(subject=subject, role=role)


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def _secret_of(request: Request) -> SecretStr | None:
    secret: SecretStr | None = request.app.state.settings.auth_secret
    return secret


def auth_enabled(request: Request) -> bool:
    """False in open mode (the app's settings have no ``auth_secret``)."""
    return _secret_of(request) is not None


def require_roles(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting users with one of ``roles`` (any role when none given).

    401 without a valid token, 403 with a valid token of another role; open mode admits all.
    """
    allowed = frozenset(roles) or frozenset(Role)

    async def dependency(request: Request) -> Principal:
        secret = _secret_of(request)
        if secret is None:
            return OPEN_PRINCIPAL
        token = bearer_token(request)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "authorization: send 'Authorization: Bearer <user token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            principal = verify_token(secret, token)
        except TokenError as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"authorization: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        if principal.role not in allowed:
            needed = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"authorization: role {principal.role.value!r} may not do this (needs: {needed})",
            )
        return principal

    return dependency


def announce_auth_mode(secret: SecretStr | None, service: str) -> None:
    """Fail fast on a too-short secret; warn loudly when the service runs in open mode."""
    if secret is None:
        log.warning(
            "%s: auth_secret is not set: OPEN MODE, every HTTP API accepts every request "
            "(set WK_%s_AUTH_SECRET to require user tokens and ingest keys)",
            service,
            service.upper(),
        )
        return
    _secret_bytes(secret)
    log.info("%s: user tokens and ingest keys are required", service)


def service_headers(secret: SecretStr | None, service: str) -> dict[str, str]:
    """Headers for one call to another service: a 5-minute auditor (read-only) token."""
    if secret is None:
        return {}
    token = issue_token(secret, f"service:{service}", Role.AUDITOR, SERVICE_TOKEN_TTL_S)
    return {"Authorization": f"Bearer {token}"}


def generate_api_key() -> tuple[str, str]:
    """A new ingest key and its hash: (key to show once, hash to store)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, hashes: list[str]) -> bool:
    digest = hash_api_key(key)
    return any(hmac.compare_digest(digest, h) for h in hashes)
