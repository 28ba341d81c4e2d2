"""Receiving a reference upload: request body to a file on disk, then validation and profiling.

The body is written as it arrives (1 MiB at a time, from a worker thread) while its SHA-256 is
taken, so a 1 GB upload never sits in memory. Validation and profiling are CPU-bound and run
in a worker thread too, one upload at a time (``upload_lock``) so that two concurrent uploads
cannot double the memory they need.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from shared.stats.reference import ReferenceProfile

from .errors import TooLarge
from .references import (
    ColumnRule,
    ReferenceFormat,
    ValidatedReference,
    profile_parquet,
    validate_to_parquet,
)

__all__ = [
    "Processed",
    "Received",
    "TooLarge",
    "process_upload",
    "receive",
    "store_values",
    "stored_copy",
    "values_path",
]

CHUNK_BYTES = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Processed:
    profile: ReferenceProfile
    validated: ValidatedReference
    passes: int


def _write(handle: BinaryIO, chunks: list[bytes]) -> None:
    for chunk in chunks:
        handle.write(chunk)


async def receive(chunks: AsyncIterator[bytes], *, directory: Path, max_bytes: int) -> Received:
    """Stream ``chunks`` into a new file under ``directory``; raises :class:`TooLarge`."""
    await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
    path = directory / f"upload-{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    handle = await anyio.to_thread.run_sync(path.open, "wb")
    try:
        pending: list[bytes] = []
        buffered = 0
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the upload exceeds the limit of {max_bytes} bytes")
            digest.update(chunk)
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= CHUNK_BYTES:
                await anyio.to_thread.run_sync(_write, handle, pending)
                pending, buffered = [], 0
        await anyio.to_thread.run_sync(_write, handle, pending)
    except BaseException:
        await anyio.to_thread.run_sync(handle.close)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        raise
    await anyio.to_thread.run_sync(handle.close)
    return Received(path=path, sha256=digest.hexdigest(), size_bytes=size)


async def file_chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    """A (spooled) file's bytes as chunks, read in a worker thread (multipart uploads)."""
    while chunk := await anyio.to_thread.run_sync(handle.read, CHUNK_BYTES):
        yield chunk


def _process(
    received: Received,
    fmt: ReferenceFormat,
    rules: list[ColumnRule],
    collect_budget: int,
) -> Processed:
    validated_path = received.path.with_suffix(".parquet")
    started = time.perf_counter()
    try:
        validated = validate_to_parquet(received.path, fmt, rules, validated_path)
        profile, passes = profile_parquet(validated, collect_budget=collect_budget)
        log.info(
            "reference %s: %d rows, %.1f MB, %d passes over the data, %.1f s",
            profile.content_hash,
            validated.n_rows,
            received.size_bytes / 2**20,
            passes,
            time.perf_counter() - started,
        )
    except BaseException:
        validated_path.unlink(missing_ok=True)
        raise
    finally:
        received.path.unlink(missing_ok=True)
    return Processed(profile=profile, validated=validated, passes=passes)


async def process_upload(
    received: Received,
    *,
    fmt: ReferenceFormat,
    rules: list[ColumnRule],
    collect_budget: int,
    lock: asyncio.Lock,
) -> Processed:
    """Validate and profile (in a worker thread, one upload at a time); deletes the upload."""
    async with lock:
        return await anyio.to_thread.run_sync(_process, received, fmt, rules, collect_budget)


def stored_copy(processed: Processed, directory: Path) -> str:
    """Keep the validated copy as ``<profile hex>.parquet``; returns its name in ``directory``."""
    name = processed.profile.content_hash.removeprefix("sha256:") + ".parquet"
    target = directory / name
    if target.exists():
        processed.validated.path.unlink(missing_ok=True)
    else:
        shutil.move(processed.validated.path, target)
    return name


def values_path(directory: Path, sha256: str) -> Path:
    """Where the distribution blob with this SHA-256 (hex) lives (content-addressed)."""
    return directory / "values" / f"{sha256}.bin"


def store_values(profile: ReferenceProfile, directory: Path) -> int:
    """Write the profile's distribution blobs (each once: same bytes, same name); returns the
    number written."""
    written = 0
    for sha256, blob in profile.blobs().items():
        target = values_path(directory, sha256)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{uuid.uuid4().hex}.part")
        partial.write_bytes(blob)
        partial.replace(target)
        written += 1
    return written
