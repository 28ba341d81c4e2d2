"""Which AI system an ingest API key belongs to (keys are scoped to one system).

Only SHA-256 hashes of keys travel on the registry topic. The index maps hash -> system and
is rebuilt lazily after the registry view changed; a hit is re-checked against the current
snapshot, so a revoked key or a deleted system stops working with the next snapshot.
"""

from __future__ import annotations

import hmac

from shared.auth import hash_api_key
from shared.contracts import SystemSnapshot
from shared.registry_view import RegistryView

__all__ = ["KeyIndex"]


class KeyIndex:
    def __init__(self, view: RegistryView) -> None:
        self._view = view
        self._by_hash: dict[str, str] = {}
        self._stale = True
        view.on_change(self._changed)

    def _changed(self, _system: SystemSnapshot) -> None:
        self._stale = True

    def system_of(self, key: str) -> str | None:
        """The system_id whose active keys include ``key``, or None for an unknown key."""
        digest = hash_api_key(key)
        if self._stale:
            self._stale = False
            self._by_hash = {
                h: system.system_id
                for system in self._view.systems.values()
                for h in system.ingest_key_hashes
            }
        system_id = self._by_hash.get(digest)
        if system_id is None:
            return None
        system = self._view.get(system_id)
        if system is None or not any(
            hmac.compare_digest(digest, h) for h in system.ingest_key_hashes
        ):
            return None
        return system_id
