"""Reference profiles by content hash: fetched from the registry over HTTP, cached.

The registry serves ``GET {registry_url}/v1/references/{hash}`` (a ``ReferenceProfile``) and,
for each numeric column whose values the profile's sample does not all hold, the column's
distribution blob at ``GET .../references/{hash}/values/{sha256}`` (every value, exact up to
1,000,000 distinct values: what drift compares a window with). The evaluator keeps every profile
and blob it fetched in memory (parsed once per reference hash) and in its own tables
(``evaluator_reference``, ``evaluator_reference_values``), so a restart does not depend on the
registry. A profile whose content does not hash to the requested hash is refused, and so is a
blob that does not hash to the SHA-256 its profile names (the profile's hash covers those).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import httpx

from shared.db import Database
from shared.stats import ReferenceProfile

from .errors import ReferenceNotFound
from .models import ReferenceRow, ReferenceValuesRow

__all__ = [
    "HttpReferenceSource",
    "ReferenceCache",
    "ReferenceNotFound",
    "ReferenceSource",
    "StaticReferenceSource",
]

log = logging.getLogger(__name__)


class ReferenceSource(Protocol):
    async def fetch(self, reference_hash: str) -> ReferenceProfile:
        """The profile; raises ReferenceNotFound, or another error when it may be retried."""
        ...

    async def fetch_values(self, reference_hash: str, sha256: str) -> bytes:
        """A distribution blob the profile names; errors as :meth:`fetch`."""
        ...


class HttpReferenceSource:
    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], dict[str, str]] = dict,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = headers
        self._transport = transport
        self._timeout_s = timeout_s

    async def fetch(self, reference_hash: str) -> ReferenceProfile:
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s) as client:
            response = await client.get(
                f"{self._base_url}/v1/references/{reference_hash}", headers=self._headers()
            )
        if response.status_code == 404:
            raise ReferenceNotFound(reference_hash)
        response.raise_for_status()
        # a profile can be megabytes of bin edges: parse it off the event loop
        return await asyncio.to_thread(ReferenceProfile.model_validate_json, response.content)

    async def fetch_values(self, reference_hash: str, sha256: str) -> bytes:
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s) as client:
            response = await client.get(
                f"{self._base_url}/v1/references/{reference_hash}/values/{sha256}",
                headers=self._headers(),
            )
        if response.status_code == 404:
            raise ReferenceNotFound(f"{reference_hash} values {sha256}")
        response.raise_for_status()
        return response.content


class StaticReferenceSource:
    """Profiles given up front (tests, benchmarks)."""

    def __init__(self, profiles: Iterable[ReferenceProfile] = ()) -> None:
        self.profiles = {p.content_hash: p for p in profiles}

    def add(self, profile: ReferenceProfile) -> str:
        self.profiles[profile.content_hash] = profile
        return profile.content_hash

    async def fetch(self, reference_hash: str) -> ReferenceProfile:
        if reference_hash not in self.profiles:
            raise ReferenceNotFound(reference_hash)
        return self.profiles[reference_hash]

    async def fetch_values(self, reference_hash: str, sha256: str) -> bytes:
        blob = (
            self.profiles[reference_hash].blobs().get(sha256)
            if reference_hash in self.profiles
            else None
        )
        if blob is None:
            raise ReferenceNotFound(f"{reference_hash} values {sha256}")
        return blob


class ReferenceCache:
    """``ensure`` (async, on the event loop) loads profiles; ``get`` (any thread) reads them."""

    def __init__(self, source: ReferenceSource, db: Database) -> None:
        self._source = source
        self._db = db
        self._profiles: dict[str, ReferenceProfile] = {}
        self._missing: set[str] = set()

    def get(self, reference_hash: str | None) -> ReferenceProfile | None:
        if reference_hash is None:
            return None
        return self._profiles.get(reference_hash)

    def missing(self, reference_hash: str) -> bool:
        return reference_hash in self._missing

    def _load(self, reference_hash: str) -> ReferenceProfile | None:
        """The stored profile, parsed (in the database thread, off the event loop)."""
        with self._db.session() as session:
            row = session.get(ReferenceRow, reference_hash)
            return None if row is None else ReferenceProfile.model_validate_json(row.profile)

    def _store(self, reference_hash: str, profile: ReferenceProfile) -> None:
        with self._db.session() as session:
            if session.get(ReferenceRow, reference_hash) is not None:
                return
            session.add(ReferenceRow(hash=reference_hash, profile=profile.model_dump_json()))
            session.commit()

    def _load_values(self, hashes: set[str]) -> dict[str, bytes]:
        with self._db.session() as session:
            found = (session.get(ReferenceValuesRow, sha256) for sha256 in sorted(hashes))
            return {row.sha256: row.data for row in found if row is not None}

    def _store_values(self, blobs: dict[str, bytes]) -> None:
        with self._db.session() as session:
            for sha256, data in blobs.items():
                if session.get(ReferenceValuesRow, sha256) is None:
                    session.add(ReferenceValuesRow(sha256=sha256, data=data))
            session.commit()

    async def _attach_values(self, reference_hash: str, profile: ReferenceProfile) -> None:
        """Every distribution blob the profile names, from our table or the source (parsed and
        verified in a thread: a blob can be 8 MB per column)."""
        wanted = profile.missing_values()
        if not wanted:
            return
        blobs = await self._db.run(self._load_values, wanted)
        fetched: dict[str, bytes] = {}
        for sha256 in sorted(wanted - set(blobs)):
            try:
                fetched[sha256] = await self._source.fetch_values(reference_hash, sha256)
            except ReferenceNotFound:
                # drift on that column falls back to the profile's sample (approximate, said so)
                log.warning("reference %s: the registry has no values %s", reference_hash, sha256)
        await asyncio.to_thread(profile.attach_values, blobs | fetched)  # verifies each hash
        if fetched:
            await self._db.run(self._store_values, fetched)

    async def ensure(self, hashes: Iterable[str]) -> None:
        """Make every profile available; raises if one cannot be fetched now (retry later)."""
        for reference_hash in hashes:
            if reference_hash in self._profiles or reference_hash in self._missing:
                continue
            stored = await self._db.run(self._load, reference_hash)
            if stored is not None:
                await self._attach_values(reference_hash, stored)
                self._profiles[reference_hash] = stored
                continue
            try:
                profile = await self._source.fetch(reference_hash)
            except ReferenceNotFound:
                log.warning("reference profile %s is not in the registry", reference_hash)
                self._missing.add(reference_hash)
                continue
            if profile.content_hash != reference_hash:
                raise ValueError(
                    f"reference profile fetched for {reference_hash} hashes to "
                    f"{profile.content_hash}"
                )
            await self._attach_values(reference_hash, profile)
            await self._db.run(self._store, reference_hash, profile)
            self._profiles[reference_hash] = profile
