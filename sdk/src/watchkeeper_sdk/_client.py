"""The synchronous client: ``log_*`` enqueue, a daemon thread delivers."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import hashlib
import ipaddress
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from watchkeeper_sdk import _version
from watchkeeper_sdk._engine import Counters, Engine, ErrorCallback, Inbox, Options, Stats
from watchkeeper_sdk._errors import ConfigurationError, InvalidEventError, SpoolError
from watchkeeper_sdk._events import (
    FeatureValue,
    Scalar,
    build_outcome,
    build_prediction,
    check_identifier,
    check_model_version,
)
from watchkeeper_sdk._frames import FrameColumns, rows_from_frame
from watchkeeper_sdk._spool import Record, Spool

__all__ = ["BaseClient", "Watchkeeper", "default_spool_dir"]

logger = logging.getLogger("watchkeeper_sdk")


def is_loopback(url: str) -> bool:
    """Whether ``url`` leads to this machine (localhost, 127.0.0.0/8, ::1): bodies are not
    worth compressing there (gzip would cost both sides CPU to save no bandwidth)."""
    host = httpx.URL(url).host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_spool_dir(url: str, system_id: str | None) -> Path:
    """``$XDG_STATE_HOME/watchkeeper/spool/<hash of url and system>`` (~/.local/state)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    digest = hashlib.sha256(f"{url}\n{system_id or ''}".encode()).hexdigest()[:16]
    return Path(state) / "watchkeeper" / "spool" / digest


class BaseClient:
    """What the sync and async clients share: options, event building, the runtime parts."""

    def __init__(
        self,
        url: str,
        api_key: str,
        system_id: str | None = None,
        *,
        model_version: str | None = None,
        batch_size: int = 500,
        linger: float = 0.5,
        max_queue: int = 10_000,
        block_timeout: float = 0.05,
        spool_dir: str | os.PathLike[str] | None = None,
        compress: bool | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_error: ErrorCallback | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        flush_at_exit: bool = True,
        exit_timeout: float = 5.0,
        max_in_flight: int = 4,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL, got {url!r}")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty str")
        if batch_size < 1 or max_queue < 1 or max_in_flight < 1:
            raise ValueError("batch_size, max_queue and max_in_flight must be >= 1")
        if linger < 0 or block_timeout < 0 or timeout <= 0 or max_retries < 0:
            raise ValueError("linger, block_timeout, max_retries must be >= 0 and timeout > 0")
        if not 0 < backoff <= max_backoff:
            raise ValueError("backoff must be > 0 and <= max_backoff")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError("transport must be an httpx.AsyncBaseTransport (the sender is async)")
        url = url.rstrip("/")
        self._system_id = None if system_id is None else check_identifier(system_id, "system_id")
        self._model_version = None if model_version is None else check_model_version(model_version)
        self._options = Options(
            base_url=url,
            api_key=api_key,
            batch_size=batch_size,
            linger=linger,
            max_queue=max_queue,
            block_timeout=block_timeout,
            compress=not is_loopback(url) if compress is None else compress,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            on_error=on_error,
            max_in_flight=max_in_flight,
            user_agent=f"watchkeeper-sdk/{_version.__version__}",
        )
        self._spool_root = (
            Path(spool_dir) if spool_dir is not None else default_spool_dir(url, system_id)
        )
        self._transport = transport
        self._flush_at_exit = flush_at_exit
        self._exit_timeout = exit_timeout
        self._counters = Counters()

    # -- runtime parts -----------------------------------------------------------------------

    def _open_spool(self) -> Spool:
        counters = self._counters

        def unreadable(path: Path, offset: int, line: bytes) -> None:
            with counters.lock:
                counters.unreadable += 1

        return Spool(self._spool_root, on_unreadable=unreadable)

    # -- events ------------------------------------------------------------------------------

    def _system(self, system_id: str | None) -> str:
        if system_id is not None:
            return check_identifier(system_id, "system_id")
        if self._system_id is None:
            raise InvalidEventError("system_id is required: pass it to the client or to the call")
        return self._system_id

    def _prediction(
        self,
        features: Mapping[str, Any],
        prediction: Any,
        scores: Mapping[Any, float] | None,
        attributes: Mapping[str, Any] | None,
        latency_ms: float | None,
        event_id: str | None,
        timestamp: datetime | str | None,
        model_version: str | None,
        system_id: str | None,
    ) -> tuple[str, Record]:
        if model_version is None:
            model_version = self._model_version
            if model_version is None:
                raise InvalidEventError(
                    "model_version is required: pass it to the client or to the call"
                )
        else:
            check_model_version(model_version)
        event_id, event = build_prediction(
            system_id=self._system(system_id),
            model_version=model_version,
            features=features,
            prediction=prediction,
            event_id=event_id,
            timestamp=timestamp,
            scores=scores,
            attributes=attributes,
            latency_ms=latency_ms,
        )
        return event_id, ("prediction", event)

    def _outcome(
        self,
        prediction_id: str,
        actual: Any,
        event_id: str | None,
        timestamp: datetime | str | None,
        system_id: str | None,
    ) -> tuple[str, Record]:
        event_id, event = build_outcome(
            system_id=self._system(system_id),
            prediction_id=prediction_id,
            actual=actual,
            event_id=event_id,
            timestamp=timestamp,
        )
        return event_id, ("outcome", event)

    def _frame_records(
        self,
        frame: Any,
        columns: FrameColumns,
        model_version: str | None,
        system_id: str | None,
    ) -> tuple[list[str], list[Record]]:
        """The event_ids and records of a frame's rows, in row order."""
        ids: list[str] = []
        records: list[Record] = []
        for row, kwargs in enumerate(rows_from_frame(frame, columns)):
            if kwargs["model_version"] is None:
                kwargs["model_version"] = model_version
            try:
                event_id, record = self._prediction(system_id=system_id, **kwargs)
            except InvalidEventError as exc:
                raise InvalidEventError(f"row {row}: {exc}") from None
            ids.append(event_id)
            records.append(record)
        return ids, records


class Watchkeeper(BaseClient):
    """Log predictions and outcomes from a serving path without waiting for the network.

    ``log_prediction`` / ``log_outcome`` validate, serialise the event and put it on a bounded
    in-memory queue (microseconds); a daemon thread batches and POSTs to ingest (gzip'd unless
    ingest is on this machine, up to ``max_in_flight`` batches at once), retries with backoff,
    and spools to disk when ingest is unreachable. Events still queued
    at interpreter exit are flushed (up to ``exit_timeout``), and whatever could not be
    delivered by then is on disk for the next client on the same ``spool_dir``.

    When the queue is full, ``log_*`` waits up to ``block_timeout`` for room, then writes the
    queue's contents and the new event to the disk spool on the caller's thread (one fsync'd
    write) and returns: no event is dropped. See sdk/README.md.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        system_id: str | None = None,
        *,
        model_version: str | None = None,
        batch_size: int = 500,
        linger: float = 0.5,
        max_queue: int = 10_000,
        block_timeout: float = 0.05,
        spool_dir: str | os.PathLike[str] | None = None,
        compress: bool | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_error: ErrorCallback | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        flush_at_exit: bool = True,
        exit_timeout: float = 5.0,
        max_in_flight: int = 4,
    ) -> None:
        super().__init__(
            url,
            api_key,
            system_id,
            model_version=model_version,
            batch_size=batch_size,
            linger=linger,
            max_queue=max_queue,
            block_timeout=block_timeout,
            spool_dir=spool_dir,
            compress=not is_loopback(url) if compress is None else compress,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            on_error=on_error,
            transport=transport,
            flush_at_exit=flush_at_exit,
            exit_timeout=exit_timeout,
            max_in_flight=max_in_flight,
        )
        self._closed = False
        self._start()
        if flush_at_exit:
            atexit.register(self._at_exit)
        os.register_at_fork(after_in_child=functools.partial(_restart_in_child, weakref.ref(self)))

    def _start(self) -> None:
        self._spool = self._open_spool()
        self._loop = asyncio.new_event_loop()
        self._progress = threading.Condition()
        self._inbox = Inbox(
            max_size=self._options.max_queue,
            batch_size=self._options.batch_size,
            spool=self._spool,
            wake=self._wake,
        )
        self._engine = Engine(
            self._options,
            inbox=self._inbox,
            spool=self._spool,
            counters=self._counters,
            executor=None,
            on_progress=self._notify_progress,
        )
        self._task = self._loop.create_task(self._engine.main(self._transport))
        self._thread = threading.Thread(
            target=self._run_loop, name="watchkeeper-sender", daemon=True
        )
        self._thread.start()

    def _run_loop(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException:  # pragma: no cover - the engine handles its own errors
            logger.exception("watchkeeper: the sender stopped")
        finally:
            self._notify_progress()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call_soon(self, callback: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing to wake
            self._loop.call_soon_threadsafe(callback)

    def _wake(self) -> None:
        self._call_soon(self._engine.wake)

    def _notify_progress(self) -> None:
        if self._engine.flush_waiters or self._engine.stopped:
            with self._progress:
                self._progress.notify_all()

    # -- logging -------------------------------------------------------------------------------

    def log_prediction(
        self,
        features: Mapping[str, FeatureValue],
        prediction: Scalar,
        *,
        scores: Mapping[str, float] | Mapping[int, float] | None = None,
        attributes: Mapping[str, FeatureValue] | None = None,
        latency_ms: float | None = None,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        model_version: str | None = None,
        system_id: str | None = None,
    ) -> str:
        """Queue one prediction; returns its event_id (generated unless given).

        Raises :class:`InvalidEventError` for an event ingest could never accept.
        Feature and attribute values that are float NaN are sent as null (missing).
        """
        event_id, record = self._prediction(
            features,
            prediction,
            scores,
            attributes,
            latency_ms,
            event_id,
            timestamp,
            model_version,
            system_id,
        )
        if not self._inbox.put(record):
            self._put_when_full(record)
        return event_id

    def log_outcome(
        self,
        prediction_id: str,
        actual: Scalar,
        *,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        system_id: str | None = None,
    ) -> str:
        """Queue the ground truth for the prediction ``prediction_id``; returns its event_id."""
        event_id, record = self._outcome(prediction_id, actual, event_id, timestamp, system_id)
        if not self._inbox.put(record):
            self._put_when_full(record)
        return event_id

    def log_batch(
        self,
        frame: Any,
        *,
        model_version: str | None = None,
        system_id: str | None = None,
        prediction_column: str = "prediction",
        event_id_column: str = "event_id",
        timestamp_column: str = "timestamp",
        model_version_column: str = "model_version",
        latency_column: str = "latency_ms",
        feature_columns: Sequence[str] | None = None,
        attribute_columns: Sequence[str] = (),
        score_columns: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Queue one prediction per row of a pandas DataFrame; returns the event_ids in order.

        Every column not named by the other arguments is a feature (or only
        ``feature_columns``). Optional columns: event_id (missing -> generated), timestamp
        (timezone-aware; missing -> now), model_version, latency_ms. ``attribute_columns`` go
        to attributes, ``score_columns`` maps class label -> column of its probability.
        All rows are validated before any is queued.
        """
        columns = FrameColumns(
            prediction=prediction_column,
            event_id=event_id_column,
            timestamp=timestamp_column,
            model_version=model_version_column,
            latency_ms=latency_column,
            features=feature_columns,
            attributes=attribute_columns,
            scores=score_columns,
        )
        ids, records = self._frame_records(frame, columns, model_version, system_id)
        queued = self._inbox.put_many(records)
        for record in records[queued:]:
            if not self._inbox.put(record):
                self._put_when_full(record)
        return ids

    def _put_when_full(self, record: Record) -> None:
        """The full-queue policy: wait up to block_timeout for room, then spill to disk."""
        inbox = self._inbox
        deadline = time.monotonic() + self._options.block_timeout
        with inbox.lock:
            inbox.pressure += 1
        self._wake()
        try:
            with inbox.lock:
                while len(inbox.items) >= inbox.max_size and not inbox.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    inbox.not_full.wait(remaining)
        finally:
            with inbox.lock:
                inbox.pressure -= 1
        if inbox.put(record):
            return
        taken = inbox.take_all(extra=record)
        assert taken is not None
        try:
            inbox.spill(*taken, self._counters)
        except SpoolError:
            logger.error("watchkeeper: queue full and spool unwritable: event not accepted")
            raise

    # -- flushing and closing --------------------------------------------------------------------

    def check(self, timeout: float = 10.0) -> None:
        """Check that ``url`` leads to ingest and that it knows the API key (an empty batch;
        no event is sent). Raises :class:`ConfigurationError` naming the problem."""
        future = asyncio.run_coroutine_threadsafe(self._engine.probe(self._transport), self._loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ConfigurationError(
                "unreachable",
                None,
                f"no answer within {timeout} s",
                f"ingest at {self._options.base_url} did not answer within {timeout} s: "
                "unreachable",
            ) from None

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every event logged before this call is delivered (or refused by ingest).

        Returns False if that did not happen within ``timeout`` seconds (None: no limit);
        undelivered events stay queued or spooled and are still sent later. Raises
        :class:`ConfigurationError` instead when what holds them up is a setup problem
        (wrong URL, key or system not known to ingest yet); they are still kept.
        """
        target = self._inbox.accepted
        engine = self._engine
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            engine.flush_waiters += 1
        self._wake()
        try:
            with self._progress:
                while engine.settled < target:
                    if engine.stopped:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._progress.wait(remaining)
                else:
                    return True
        finally:
            with self._progress:
                engine.flush_waiters -= 1
        if engine.problem is not None:
            raise engine.problem.copy()
        return False

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting events, deliver what is queued, spool what could not be delivered.

        Waits at most ``timeout`` seconds (default ``exit_timeout``) for delivery.
        """
        with self._inbox.lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.closed = True
            self._inbox.not_full.notify_all()
        atexit.unregister(self._at_exit)
        self._call_soon(self._engine.begin_close)
        if threading.current_thread() is self._thread:
            return  # called from on_error: the sender winds down by itself
        self._thread.join(self._exit_timeout if timeout is None else timeout)
        if self._thread.is_alive():
            self._call_soon(self._task.cancel)  # the engine spools what is in memory
            self._thread.join(5.0)
        if self._thread.is_alive():
            logger.error("watchkeeper: the sender did not stop; spooling the queue directly")
            self._engine.salvage()
        self._spool.close()

    def _at_exit(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - never break interpreter exit
            logger.exception("watchkeeper: flush at exit failed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> Stats:
        """Counters since this client started; ``dropped`` is always 0."""
        return self._engine.stats()

    @property
    def spool_dir(self) -> Path:
        return self._spool_root


def _restart_in_child(ref: weakref.ref[Watchkeeper]) -> None:
    """After fork: the sender thread did not survive; give the child its own runtime.

    Events queued in the parent stay the parent's to deliver; the child starts empty with its
    own spool directory.
    """
    client = ref()
    if client is None or client._closed:
        return
    client._spool.abandon_after_fork()
    client._counters = Counters()
    try:
        client._start()
    except SpoolError:  # pragma: no cover
        logger.exception("watchkeeper: could not restart the sender after fork")
