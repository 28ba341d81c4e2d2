"""The asyncio client: ``await log_*`` only enqueues, a task on the caller's loop delivers."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from watchkeeper_sdk._client import BaseClient
from watchkeeper_sdk._engine import Engine, ErrorCallback, Inbox, Stats
from watchkeeper_sdk._errors import ClientClosedError, ConfigurationError, SpoolError
from watchkeeper_sdk._events import FeatureValue, Scalar
from watchkeeper_sdk._frames import FrameColumns
from watchkeeper_sdk._spool import Record

__all__ = ["AsyncWatchkeeper"]

logger = logging.getLogger("watchkeeper_sdk")


class AsyncWatchkeeper(BaseClient):
    """The asyncio twin of :class:`Watchkeeper` (same options, same guarantees).

    ``await log_prediction(...)`` validates and enqueues without any I/O; the sender is a task
    started on the running loop by the first call, and spool writes run in a worker thread so
    the loop is never blocked by fsync. Use ``async with`` or ``await aclose()`` to deliver
    before the loop ends; if the loop ends first (its tasks are cancelled), whatever is still in
    memory is written to the spool and sent by the next client on the same ``spool_dir``.
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
            compress=compress,
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
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="watchkeeper-spool"
        )
        self._spool = self._open_spool()
        self._space = asyncio.Event()
        self._progress = asyncio.Event()
        self._inbox = Inbox(
            max_size=self._options.max_queue,
            batch_size=self._options.batch_size,
            spool=self._spool,
            wake=self._wake,
            on_space=self._space.set,
        )
        self._engine = Engine(
            self._options,
            inbox=self._inbox,
            spool=self._spool,
            counters=self._counters,
            executor=self._executor,
            on_progress=self._progress.set,
        )
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if flush_at_exit:
            atexit.register(self._at_exit)

    def _wake(self) -> None:
        self._engine.wake_event.set()

    def _ensure_sender(self) -> None:
        task = self._task
        if task is not None and not task.done():
            return
        if self._closed:
            raise ClientClosedError("this AsyncWatchkeeper is closed")
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._progress = asyncio.Event()
        self._inbox.on_space = self._space.set
        self._engine.on_progress = self._progress.set
        self._task = self._loop.create_task(
            self._engine.main(self._transport), name="watchkeeper-sender"
        )

    async def _put(self, record: Record) -> None:
        self._ensure_sender()
        if self._inbox.put(record):
            return
        inbox = self._inbox
        deadline = time.monotonic() + self._options.block_timeout
        with inbox.lock:
            inbox.pressure += 1
        self._wake()
        try:
            while True:
                self._space.clear()
                if inbox.put(record):
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await self._space.wait()
                except TimeoutError:
                    pass
        finally:
            with inbox.lock:
                inbox.pressure -= 1
        taken = inbox.take_all(extra=record)
        assert taken is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, inbox.spill, *taken, self._counters)
        except SpoolError:
            logger.error("watchkeeper: queue full and spool unwritable: event not accepted")
            raise

    # -- logging -------------------------------------------------------------------------------

    async def log_prediction(
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
        """Queue one prediction; returns its event_id. See :meth:`Watchkeeper.log_prediction`."""
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
        await self._put(record)
        return event_id

    async def log_outcome(
        self,
        prediction_id: str,
        actual: Scalar,
        *,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        system_id: str | None = None,
    ) -> str:
        """Queue the ground truth for ``prediction_id``; returns its event_id."""
        event_id, record = self._outcome(prediction_id, actual, event_id, timestamp, system_id)
        await self._put(record)
        return event_id

    async def log_batch(
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
        """Queue one prediction per DataFrame row (see :meth:`Watchkeeper.log_batch`).

        The rows are converted in a worker thread so a large frame does not stall the loop.
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
        ids, records = await asyncio.to_thread(
            self._frame_records, frame, columns, model_version, system_id
        )
        self._ensure_sender()
        queued = self._inbox.put_many(records)
        for record in records[queued:]:
            await self._put(record)
        return ids

    # -- flushing and closing --------------------------------------------------------------------

    async def check(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - mirrors the sync API
        """Check the URL and the API key (see :meth:`Watchkeeper.check`)."""
        try:
            async with asyncio.timeout(timeout):
                await self._engine.probe(self._transport)
        except TimeoutError:
            raise ConfigurationError(
                "unreachable",
                None,
                f"no answer within {timeout} s",
                f"ingest at {self._options.base_url} did not answer within {timeout} s: "
                "unreachable",
            ) from None

    async def flush(self, timeout: float | None = 30.0) -> bool:  # noqa: ASYNC109 - mirrors the sync API
        """Wait until every event logged before this call is delivered (or refused by ingest).

        Like :meth:`Watchkeeper.flush`, raises :class:`ConfigurationError` instead of returning
        False when a setup problem holds the events up."""
        delivered = await self._flush(timeout)
        if not delivered and self._engine.problem is not None:
            raise self._engine.problem.copy()
        return delivered

    async def _flush(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        target = self._inbox.accepted
        engine = self._engine
        if engine.settled >= target:
            return True
        if self._task is None or self._task.done():
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        engine.flush_waiters += 1
        self._wake()
        try:
            while True:
                self._progress.clear()
                if engine.settled >= target:
                    return True
                if engine.stopped:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    async with asyncio.timeout(remaining):
                        await self._progress.wait()
                except TimeoutError:
                    pass
        finally:
            engine.flush_waiters -= 1

    async def aclose(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop accepting events, deliver what is queued, spool what could not be delivered."""
        if self._closed:
            return
        self._closed = True
        with self._inbox.lock:
            self._inbox.closed = True
        atexit.unregister(self._at_exit)
        task = self._task
        if task is not None and not task.done():
            self._engine.begin_close()
            await asyncio.wait([task], timeout=self._exit_timeout if timeout is None else timeout)
            if not task.done():
                task.cancel()  # the engine spools what is still in memory
                await asyncio.wait([task])
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._engine.salvage)
        self._spool.close()
        self._executor.shutdown(wait=True)

    def _at_exit(self) -> None:
        """At interpreter exit the loop is gone: put what is still in memory on disk."""
        try:
            loop = self._loop
            if loop is not None and loop.is_running():
                logger.warning("watchkeeper: loop still running at exit; call aclose() first")
                return
            self._closed = True
            self._engine.salvage()
            self._spool.close()
            self._executor.shutdown(wait=False)
        except Exception:  # pragma: no cover - never break interpreter exit
            logger.exception("watchkeeper: spooling at exit failed")

    async def __aenter__(self) -> Self:
        self._ensure_sender()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def stats(self) -> Stats:
        """Counters since this client started; ``dropped`` is always 0."""
        return self._engine.stats()

    @property
    def spool_dir(self) -> Path:
        return self._spool_root
