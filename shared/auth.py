"""Credentials every service checks the same way.

Ingest API keys are random 32-byte secrets scoped to one AI system. Only their SHA-256 hash
is stored (registry database) and propagated (registry topic); a key is shown once, at
creation. A fast hash is enough because the keys are high-entropy random values, not
passwords, and ingest must check one per request at high rates.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["API_KEY_PREFIX", "generate_api_key", "hash_api_key", "key_matches"]

API_KEY_PREFIX = "wk_"


def generate_api_key() -> tuple[str, str]:
    """A new ingest key and its hash: (key to show once, hash to store)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, hashes: list[str]) -> bool:
    digest = hash_api_key(key)
    return any(hmac.compare_digest(digest, h) for h in hashes)
