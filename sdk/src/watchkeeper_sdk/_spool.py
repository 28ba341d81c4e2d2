"""The disk spool: events ingest could not take yet, kept durably and replayed in order.

Layout under the spool root (see sdk/README.md)::

    <root>/<instance>/.lock                 flock'd by the live client that owns the directory
    <root>/<instance>/<ticket:016d>.seg     append-only NDJSON, one {"kind", "event"} per line
    <root>/<instance>/<ticket:016d>.seg.offset   bytes of that segment already delivered

Every write is fsync'd before it counts. Each client instance owns one directory; a directory
whose lock is free belongs to a process that died (or closed with events left), and the next
client on the same root adopts it and replays it before its own events.

Order: events leave the in-memory queue in *tickets* (increasing numbers). A batch being sent
holds its ticket; if it fails it is written under that ticket, so it lands before anything
spilled after it was taken. Segments are named by their first ticket and read in that order,
and a segment is not read while a lower ticket is still outstanding.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from watchkeeper_sdk._errors import EventKind, SpoolError
from watchkeeper_sdk._events import new_event_id

__all__ = ["Head", "Record", "Spool"]

logger = logging.getLogger("watchkeeper_sdk")

Record = tuple[EventKind, bytes]
"""An event's kind and its JSON bytes (see _events.py)."""

_SUFFIX = ".seg"
_LOCK = ".lock"
_STALE_TMP_SECONDS = 3600.0
_KINDS: frozenset[str] = frozenset({"prediction", "outcome"})
# a record line as write() makes it (orjson.dumps({"kind": ..., "event": ...}) gives the same)
_LINE_HEAD: dict[EventKind, bytes] = {
    "prediction": b'{"kind":"prediction","event":',
    "outcome": b'{"kind":"outcome","event":',
}

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@dataclass(eq=False)
class _Segment:
    path: Path
    key: int
    own: bool
    size: int
    offset: int = 0
    last: int = 0
    fd: int | None = None  # open for appending (own open segment only)


@dataclass(eq=False)
class _Orphan:
    path: Path
    lock_fd: int
    segments: list[_Segment] = field(default_factory=list)


@dataclass(slots=True)
class _Parsed:
    records: list[Record] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # offsets in the data read
    unreadable: list[tuple[int, bytes]] = field(default_factory=list)
    position: int = 0  # where parsing stopped
    skip_to: int | None = None  # the first line is unreadable: skip up to here
    full: bool = False


@dataclass(frozen=True, slots=True)
class Head:
    """The next spooled events to replay, in logging order, at most ``limit`` of each kind,
    and where each one ends in its segment."""

    segment: _Segment
    records: list[Record]
    ends: list[int]

    @property
    def own(self) -> bool:
        return self.segment.own


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class Spool:
    """Append-only fsync'd segment files; thread-safe (callers' threads and the sender)."""

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = 8 << 20,
        on_unreadable: Callable[[Path, int, bytes], None] | None = None,
    ) -> None:
        self.root = root
        self.segment_bytes = segment_bytes
        self._on_unreadable = on_unreadable
        self._io = threading.Lock()  # serialises file writes (held during fsync)
        self._book = threading.Lock()  # guards the index below (never held during a write)
        self._tickets = 0
        self._outstanding: set[int] = set()
        self._sending: set[int] = set()  # outstanding tickets of batches being sent directly
        self._orphans: list[_Orphan] = []
        self._own: list[_Segment] = []
        self._open: _Segment | None = None
        self._backlog = 0
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def _ensure_dir(self) -> Path:
        """Create and lock this instance's directory on first write (callers hold ``_io``)."""
        if self._dir is not None:
            return self._dir
        name = new_event_id()
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.root / f".tmp-{name}"
            tmp.mkdir(mode=0o700)
            fd = os.open(tmp / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            if not _try_lock(fd):  # pragma: no cover - nobody else knows this name
                os.close(fd)
                raise OSError(f"could not lock new spool directory {tmp}")
            final = self.root / name
            tmp.rename(final)
            _fsync_dir(self.root)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.root}: {exc}") from exc
        self._dir = final
        self._lock_fd = fd
        return final

    @property
    def directory(self) -> Path | None:
        """This instance's own directory (None until something was spooled)."""
        return self._dir

    def abandon_after_fork(self) -> None:
        """In a forked child: close inherited descriptors without touching the parent's files."""
        self._closed = True
        fds = [orphan.lock_fd for orphan in self._orphans]
        if self._open is not None and self._open.fd is not None:
            fds.append(self._open.fd)
        if self._lock_fd is not None:
            fds.append(self._lock_fd)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # flock locks stay held through the parent's descriptors

    def close(self) -> None:
        """Release the directory: left-over segments stay for the next client to adopt."""
        with self._io, self._book:
            if self._closed:
                return
            self._closed = True
            if self._open is not None and self._open.fd is not None:
                os.close(self._open.fd)
                self._open.fd = None
            self._open = None
            for orphan in self._orphans:
                os.close(orphan.lock_fd)
            self._orphans.clear()
            for segment in [s for s in self._own if s.offset >= s.size]:
                self._drop(segment)
            if self._dir is not None and self._lock_fd is not None:
                if not self._own:
                    self._remove_dir(self._dir)
                os.close(self._lock_fd)
                self._lock_fd = None

    @staticmethod
    def _remove_dir(path: Path) -> None:
        try:
            for child in path.iterdir():
                if child.name == _LOCK or child.name.endswith(".offset"):
                    _remove_quietly(child)
            (path / _LOCK).unlink(missing_ok=True)
            path.rmdir()
        except OSError as exc:  # a stray file: leave the directory, it is harmless
            logger.debug("could not remove spool directory %s: %s", path, exc)

    def adopt_orphans(self) -> int:
        """Take over directories of dead clients under the root; returns bytes to replay."""
        if self._closed or not self.root.is_dir():
            return 0
        known = {orphan.path.name for orphan in self._orphans}
        if self._dir is not None:
            known.add(self._dir.name)
        found = 0
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name in known or not entry.is_dir():
                continue
            if name.startswith("."):
                self._remove_stale_tmp(entry)
                continue
            try:
                fd = os.open(entry / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            if not _try_lock(fd):
                os.close(fd)
                continue
            orphan = _Orphan(entry, fd, self._load_segments(entry))
            if not orphan.segments:
                self._remove_dir(entry)
                os.close(fd)
                continue
            with self._book:
                self._orphans.append(orphan)
                for segment in orphan.segments:
                    self._backlog += segment.size - segment.offset
                    found += segment.size - segment.offset
            logger.info("watchkeeper: replaying %d spooled bytes left in %s", found, entry)
        return found

    def _remove_stale_tmp(self, entry: Path) -> None:
        try:
            if time.time() - entry.stat().st_mtime < _STALE_TMP_SECONDS:
                return
            fd = os.open(entry / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            if _try_lock(fd) and not any(entry.glob(f"*{_SUFFIX}")):
                self._remove_dir(entry)
        finally:
            os.close(fd)

    @staticmethod
    def _load_segments(directory: Path) -> list[_Segment]:
        segments = []
        for path in directory.glob(f"*{_SUFFIX}"):
            try:
                key = int(path.name.removesuffix(_SUFFIX))
                size = path.stat().st_size
            except (ValueError, OSError):
                continue
            offset = 0
            with contextlib.suppress(OSError, ValueError):
                offset = min(int(path.with_name(path.name + ".offset").read_text()), size)
            if offset >= size:
                _remove_quietly(path)
                _remove_quietly(path.with_name(path.name + ".offset"))
                continue
            segments.append(_Segment(path, key, own=False, size=size, offset=offset, last=key))
        segments.sort(key=lambda segment: segment.key)
        return segments

    # -- tickets ---------------------------------------------------------------------------

    def reserve(self, *, sending: bool = False) -> int:
        """A new ticket: a place in the replay order for events just taken off the queue.

        ``sending``: they are being sent directly; they only come to the spool if that
        fails, so meanwhile the queue behind them may be sent directly too (see pending())."""
        with self._book:
            self._tickets += 1
            self._outstanding.add(self._tickets)
            if sending:
                self._sending.add(self._tickets)
            return self._tickets

    def release(self, ticket: int) -> None:
        """The events of ``ticket`` were delivered (or accepted back) and need no place."""
        with self._book:
            self._outstanding.discard(ticket)
            self._sending.discard(ticket)

    def pending(self) -> bool:
        """True while anything is spooled, or being spooled, ahead of the in-memory queue
        (not counting batches that are being sent directly)."""
        with self._book:
            return self._backlog > 0 or len(self._outstanding) > len(self._sending)

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    # -- writing ---------------------------------------------------------------------------

    def write(self, ticket: int, records: Sequence[Record]) -> int:
        """Append ``records`` durably in the place of ``ticket``; returns bytes written.

        On failure nothing counts as written (a partial write is truncated away), the ticket
        stays outstanding and :class:`SpoolError` is raised.
        """
        if not records:
            self.release(ticket)
            return 0
        heads = _LINE_HEAD
        data = b"".join([b"%s%s}\n" % (heads[kind], event) for kind, event in records])
        with self._io:
            with self._book:
                if self._closed:
                    raise SpoolError("the spool is closed")
            directory = self._ensure_dir()
            with self._book:
                segment, new = self._target(ticket, directory)
            try:
                self._append(segment, data, new)
            except OSError as exc:
                raise SpoolError(f"could not write to spool {segment.path}: {exc}") from exc
            with self._book:
                segment.size += len(data)
                segment.last = max(segment.last, ticket)
                self._backlog += len(data)
                self._outstanding.discard(ticket)
                self._sending.discard(ticket)
                if new:
                    keys = [s.key for s in self._own]
                    self._own.insert(bisect.bisect(keys, segment.key), segment)
                    if self._open is None or segment.key > self._open.key:
                        previous, self._open = self._open, segment
                        if previous is not None:
                            if previous.fd is not None:
                                os.close(previous.fd)
                                previous.fd = None
                            if previous.offset >= previous.size:
                                self._drop(previous)  # replayed while it was still open
                    elif segment.fd is not None:
                        os.close(segment.fd)
                        segment.fd = None
        return len(data)

    def _target(self, ticket: int, directory: Path) -> tuple[_Segment, bool]:
        """The segment ``ticket`` may append to without breaking order, or a new one."""
        current = self._open
        if (
            current is not None
            and current.fd is not None
            and current.last < ticket
            and current.size < self.segment_bytes
            and not any(current.last < other < ticket for other in self._outstanding)
        ):
            return current, False
        for segment in self._own:  # a ticket written twice (salvage at shutdown) stays in place
            if segment.key == ticket:
                return segment, False
        return _Segment(directory / f"{ticket:016d}{_SUFFIX}", ticket, own=True, size=0), True

    def _append(self, segment: _Segment, data: bytes, new: bool) -> None:
        fd = segment.fd
        if fd is None:
            fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            segment.fd = fd
        try:
            _write_all(fd, data)
            os.fsync(fd)
            if new:
                _fsync_dir(segment.path.parent)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, segment.size)
            if new:
                os.close(fd)
                segment.fd = None
                _remove_quietly(segment.path)
            raise

    # -- replay ----------------------------------------------------------------------------

    def _head_segment(self) -> _Segment | None:
        for orphan in self._orphans:
            for segment in orphan.segments:
                if segment.offset < segment.size:
                    return segment
        floor = min(self._outstanding, default=None)
        for segment in self._own:
            if floor is not None and segment.key > floor:
                return None
            if segment.offset < segment.size:
                return segment
        return None

    def read_head(self, limit: int) -> Head | None:
        """The oldest spooled events, up to ``limit`` of each kind (predictions and outcomes
        interleaved as logged), or None if none may be read now."""
        while True:
            with self._book:
                if self._closed:
                    return None
                segment = self._head_segment()
                if segment is None:
                    return None
                start, size = segment.offset, segment.size
            head = self._read(segment, start, size, limit)
            if head is not None:
                return head
            # only unreadable records there: they were skipped, look again

    def read_after(self, head: Head, limit: int) -> Head | None:
        """The events right after ``head`` in its segment (read ahead while ``head`` is still
        being delivered), or None: at the end of the segment, or an unreadable record there
        (``read_head`` deals with it once ``head`` is committed)."""
        with self._book:
            if self._closed:
                return None
            segment = head.segment
            start, size = head.ends[-1], segment.size
        if start >= size:
            return None
        return self._read(segment, start, size, limit, ahead=True)

    def _read(
        self, segment: _Segment, start: int, size: int, limit: int, *, ahead: bool = False
    ) -> Head | None:
        # read about what a head needs (1 KiB per event; more if that was not enough), not
        # megabytes for every head
        want = min(size - start, max(64 << 10, limit << 11))
        with open(segment.path, "rb") as file:
            while True:
                file.seek(start)
                data = file.read(want)
                parsed = self._parse(segment, data, limit, ahead=ahead)
                if parsed.full or start + len(data) >= size:
                    break
                want = min(size - start, want * 4)
        records, ends, position = parsed.records, parsed.ends, parsed.position
        for offset, line in parsed.unreadable:
            self._unreadable(segment, start + offset, line)
        if parsed.skip_to is not None:
            self._skip(segment, start + parsed.skip_to)
            return None
        if not records:
            if ahead:
                return None
            tail = data[position:]
            if tail and start + len(data) >= size and segment is not self._open:
                # torn last line of a segment whose writer died mid-write
                self._unreadable(segment, start + position, tail)
                self._skip(segment, size)
            return None
        return Head(segment, records, [start + end for end in ends])

    def _parse(self, segment: _Segment, data: bytes, limit: int, *, ahead: bool) -> _Parsed:
        """The records at the start of ``data``, up to ``limit`` of each kind; ``full`` when
        the read stopped at a limit or at an unreadable line, not at the end of ``data``."""
        parsed = _Parsed()
        records, ends = parsed.records, parsed.ends
        counts = {"prediction": 0, "outcome": 0}
        position = 0
        # lines this client wrote itself (fsync'd, read back from the page cache) are taken as
        # written; a dead client's may end in a torn write, so each of those is parsed first
        decode = self._decode_own if segment.own else self._decode
        while True:
            newline = data.find(b"\n", position)
            if newline < 0:
                break
            line = data[position:newline]
            record = decode(line)
            if record is None and ahead:
                parsed.full = True
                break  # reported and skipped when read as the head
            if record is None:
                parsed.unreadable.append((position, line))
                if not records:
                    parsed.skip_to = newline + 1
                    parsed.full = True
                    break
                ends[-1] = newline + 1  # skip it together with the previous event
                position = newline + 1
                continue
            if counts[record[0]] >= limit:
                parsed.full = True
                break  # a full batch of that kind: replay up to here first
            counts[record[0]] += 1
            records.append(record)
            ends.append(newline + 1)
            position = newline + 1
        parsed.position = position
        return parsed

    @classmethod
    def _decode_own(cls, line: bytes) -> Record | None:
        for kind, head in _LINE_HEAD.items():
            if line.startswith(head) and line.endswith(b"}"):
                return kind, line[len(head) : -1]
        return cls._decode(line)

    @staticmethod
    def _decode(line: bytes) -> Record | None:
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        kind, event = payload.get("kind"), payload.get("event")
        if kind not in _KINDS or not isinstance(event, dict):
            return None
        head = _LINE_HEAD[kind]
        if len(payload) == 2 and line.startswith(head) and line.endswith(b"}"):
            return kind, line[len(head) : -1]  # the event's bytes as they were logged
        return kind, orjson.dumps(event)

    def _unreadable(self, segment: _Segment, offset: int, line: bytes) -> None:
        logger.error(
            "watchkeeper: skipping an unreadable spool record at %s:%d (%d bytes)",
            segment.path,
            offset,
            len(line),
        )
        if self._on_unreadable is not None:
            self._on_unreadable(segment.path, offset, line)

    def _skip(self, segment: _Segment, offset: int) -> None:
        self._advance(segment, offset)

    def commit(self, head: Head, count: int) -> None:
        """The first ``count`` events of ``head`` are settled: never replay them again."""
        if count > 0:
            self._advance(head.segment, head.ends[count - 1])

    def _advance(self, segment: _Segment, offset: int) -> None:
        with self._book:
            if self._closed or offset <= segment.offset:
                return
            self._backlog -= min(offset, segment.size) - segment.offset
            segment.offset = offset
            finished = segment.offset >= segment.size
            if finished and segment is not self._open:
                self._drop(segment)
                return
        if finished and self._io.acquire(blocking=False):
            # our own open segment is used up: close it so the next write starts a new one
            try:
                with self._book:
                    if segment is self._open and segment.offset >= segment.size:
                        if segment.fd is not None:
                            os.close(segment.fd)
                            segment.fd = None
                        self._open = None
                        self._drop(segment)
                        return
            finally:
                self._io.release()
        offset_path = segment.path.with_name(segment.path.name + ".offset")
        tmp = offset_path.with_name(offset_path.name + ".tmp")
        try:
            tmp.write_bytes(str(segment.offset).encode())
            tmp.replace(offset_path)
        except OSError as exc:  # only costs duplicates (deduplicated by ingest) after a crash
            logger.warning("watchkeeper: could not record spool progress: %s", exc)

    def _drop(self, segment: _Segment) -> None:
        """Forget a fully delivered segment (caller holds the book lock)."""
        _remove_quietly(segment.path)
        _remove_quietly(segment.path.with_name(segment.path.name + ".offset"))
        if segment.own:
            self._own.remove(segment)
            return
        for orphan in self._orphans:
            if segment in orphan.segments:
                orphan.segments.remove(segment)
                if not orphan.segments:
                    self._orphans.remove(orphan)
                    self._remove_dir(orphan.path)
                    os.close(orphan.lock_fd)
                return
