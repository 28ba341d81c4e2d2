"""The background sender shared by the sync and async clients.

One asyncio coroutine (:meth:`Engine.run`) owns delivery. The sync client runs it on an event
loop in a daemon thread; the async client runs it as a task on the caller's loop. Either way
the callers only touch the :class:`Inbox` (a bounded deque behind a lock).

Two modes:

* direct: take up to ``batch_size`` events (after ``linger`` or as soon as a batch is full)
  and send them in a task of their own, so that up to ``max_in_flight`` batches are on their
  way at once; retry retryable failures in memory a few times with backoff;
* spool: once a batch could not be delivered it is written to the disk spool, and from then on
  new events are appended to the spool too (so nothing overtakes it) while the sender replays
  the spool head in order, with backoff between failed attempts. When the spool is empty the
  sender goes back to direct mode.

Either way a batch is up to ``batch_size`` events *of each kind* taken in logging order. Its
outcomes are sent only once its predictions, and those of every batch taken before it, are
settled, so an outcome never overtakes a prediction logged before it. When a batch goes to the
spool instead, the outcomes of the batches after it follow it there.
Answers that mean "not yet" (wrong URL, key or system not known to ingest yet) keep the events
like a 503 does, and are reported once per cause (``Stats.problem``, ``flush()``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson

from watchkeeper_sdk._backoff import Backoff
from watchkeeper_sdk._errors import (
    ClientClosedError,
    ConfigurationError,
    DeliveryError,
    EventKind,
    SpoolError,
)
from watchkeeper_sdk._spool import Head, Record, Spool
from watchkeeper_sdk._wire import PATHS, Action, Cause, Reply, classify, encode_batch

__all__ = ["Counters", "Engine", "Inbox", "Options", "Stats"]

logger = logging.getLogger("watchkeeper_sdk")

T = TypeVar("T")

ErrorCallback = Callable[[DeliveryError], None]


@dataclass(frozen=True, slots=True)
class Options:
    base_url: str
    api_key: str = field(repr=False)
    batch_size: int
    linger: float
    max_queue: int
    block_timeout: float
    compress: bool
    timeout: float
    max_retries: int
    backoff: float
    max_backoff: float
    on_error: ErrorCallback | None
    max_in_flight: int = 4
    rescan_interval: float = 60.0
    user_agent: str = "watchkeeper-sdk"


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters since the client started (events, not requests, unless said otherwise).

    ``sent`` counts events ingest acknowledged (accepted or recognised as duplicates);
    ``rejected`` events ingest refused for good (reported to ``on_error``, not retried);
    ``retried`` failed requests that will be (or were) sent again; ``spooled`` events written
    to the disk spool and ``replayed`` events settled from it (including a dead client's);
    ``unreadable`` spool records that could not be decoded (only after a crash mid-write or
    disk corruption); ``dropped`` is always 0: the SDK never discards an event it accepted.
    ``held`` counts events ingest did not take because of a setup problem (wrong URL, key or
    system not known yet), each time it happened, and ``held_by_cause`` splits it by cause
    (``not_found``, ``unauthorized``, ``forbidden``, ``unknown_system``); those events are
    kept and retried. ``problem`` describes the setup problem that still blocks delivery
    (None once ingest takes events again).
    """

    queued: int
    sent: int
    duplicates: int
    rejected: int
    retried: int
    spooled: int
    replayed: int
    unreadable: int
    spool_backlog_bytes: int
    dropped: int = 0
    held: int = 0
    held_by_cause: Mapping[str, int] = field(default_factory=dict)
    problem: str | None = None


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.duplicates = 0
        self.rejected = 0
        self.retried = 0
        self.spooled = 0
        self.replayed = 0
        self.unreadable = 0
        self.held = 0
        self.held_by_cause: dict[str, int] = {}


class Inbox:
    """The bounded in-memory queue between callers and the sender.

    ``put`` is the whole hot path of ``log_*``: a lock, an append and, only when the sender
    must look (first event, full batch), a wake-up.
    """

    def __init__(
        self,
        *,
        max_size: int,
        batch_size: int,
        spool: Spool,
        wake: Callable[[], None],
        on_space: Callable[[], None] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.not_full = threading.Condition(self.lock)
        self.items: deque[Record] = deque()
        self.outcomes = 0  # of the queued items (the rest are predictions)
        self.max_size = max_size
        self.batch_size = batch_size
        self.spool = spool
        self.wake = wake
        self.on_space = on_space
        self.accepted = 0
        self.pressure = 0  # callers waiting for room
        self.closed = False
        self.first_at = 0.0

    def put(self, record: Record) -> bool:
        """Queue one record; False when full (the caller applies the full-queue policy)."""
        with self.lock:
            if self.closed:
                raise ClientClosedError("this Watchkeeper client is closed")
            items = self.items
            size = len(items)
            if size >= self.max_size:
                return False
            items.append(record)
            self.accepted += 1
            if record[0] == "outcome":
                self.outcomes += 1
                same_kind = self.outcomes
            else:
                same_kind = size + 1 - self.outcomes
            if size == 0:
                self.first_at = time.monotonic()
        if size == 0 or same_kind == self.batch_size:
            self.wake()
        return True

    def full_batch(self) -> bool:
        """A whole batch of one kind is queued."""
        outcomes = self.outcomes
        return max(outcomes, len(self.items) - outcomes) >= self.batch_size

    def push_front(self, records: list[Record]) -> None:
        """Give back records taken off the queue, ahead of the rest (caller holds the lock)."""
        self.items.extendleft(reversed(records))
        self.outcomes += sum(1 for kind, _ in records if kind == "outcome")

    def put_many(self, records: list[Record]) -> int:
        """Queue as many of ``records`` as fit; returns how many were taken."""
        with self.lock:
            if self.closed:
                raise ClientClosedError("this Watchkeeper client is closed")
            room = max(0, self.max_size - len(self.items))
            taken = records[:room]
            if taken and not self.items:
                self.first_at = time.monotonic()
            self.items.extend(taken)
            self.outcomes += sum(1 for kind, _ in taken if kind == "outcome")
            self.accepted += len(taken)
        if taken:
            self.wake()
        return len(taken)

    def take(self, limit: int) -> tuple[int, list[Record]] | None:
        """The oldest records, up to ``limit`` of each kind, and their ticket, unless the
        spool must go first."""
        with self.lock:
            if not self.items or self.spool.pending():
                return None
            items = self.items
            records: list[Record] = []
            predictions = outcomes = 0
            while items:
                if items[0][0] == "outcome":
                    if outcomes >= limit:
                        break
                    outcomes += 1
                elif predictions >= limit:
                    break
                else:
                    predictions += 1
                records.append(items.popleft())
            self.outcomes -= outcomes
            ticket = self.spool.reserve(sending=True)
            if items:
                self.first_at = time.monotonic()
            if self.pressure:
                self.not_full.notify_all()
        if self.on_space is not None:
            self.on_space()
        return ticket, records

    def take_all(self, extra: Record | None = None) -> tuple[int, list[Record]] | None:
        """Every queued record (plus ``extra``, counted as accepted) under one ticket."""
        with self.lock:
            records = list(self.items)
            self.items.clear()
            self.outcomes = 0
            if extra is not None:
                records.append(extra)
            if not records:
                return None
            ticket = self.spool.reserve()
            if self.pressure:
                self.not_full.notify_all()
        if self.on_space is not None:
            self.on_space()
        return ticket, records

    def spill(self, ticket: int, records: list[Record], counters: Counters) -> None:
        """Write records taken by a caller whose queue was full; the last one is the caller's."""
        try:
            self.spool.write(ticket, records)
        except BaseException:  # SpoolError, or the caller interrupted during the write
            # give back what was queued before; the caller's own event was not accepted
            with self.lock:
                self.push_front(records[:-1])
            self.spool.release(ticket)
            raise
        with self.lock:
            self.accepted += 1
        with counters.lock:
            counters.spooled += len(records)
        self.wake()


@dataclass(frozen=True, slots=True)
class _Progress:
    remaining: list[int]  # indexes of the events still to deliver (none: all settled)
    retry_after: float | None = None


@dataclass(eq=False, slots=True)
class _Delivery:
    """A batch taken off the queue and sent directly: its predictions at once, its outcomes
    once every prediction taken before them (this batch's and earlier batches') is settled."""

    ticket: int
    predictions: list[bytes]  # not settled yet
    outcomes: list[bytes]
    previous: _Delivery | None  # the batch taken just before (until its gate opened)
    # set once this batch's predictions and those of every earlier batch are settled
    # (``clear``), or once some of them went to the spool (then the outcomes must follow)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    clear: bool = False
    task: asyncio.Task[None] | None = None

    def records(self) -> list[Record]:
        return [("prediction", event) for event in self.predictions] + [
            ("outcome", event) for event in self.outcomes
        ]


@dataclass(slots=True)
class _Replay:
    """A spool head being replayed: which of its events are settled, how many are committed."""

    head: Head
    settled: list[bool]
    committed: int = 0
    uncounted: int = 0  # settled since last counted (in stats and for flush)


_ADVICE = {
    Cause.NOT_FOUND: "check the client's url (the ingest base URL)",
    Cause.UNAUTHORIZED: "check the API key, or wait until a new key has reached ingest",
    Cause.FORBIDDEN: "the API key is not valid for this AI system (yet)",
    Cause.UNKNOWN_SYSTEM: "register the AI system, or wait until registry has told ingest",
    Cause.UNREACHABLE: "check the url and that ingest is running",
}


def problem_message(url: str, cause: str, status: int | None, detail: str) -> str:
    answer = f"answered HTTP {status}" if status is not None else "did not answer"
    return f"ingest at {url} {answer} ({detail[:300]}): {_ADVICE.get(cause, cause)}"


class Engine:
    """Delivers queued events to ingest; see the module docstring for the two modes."""

    def __init__(
        self,
        options: Options,
        *,
        inbox: Inbox,
        spool: Spool,
        counters: Counters,
        executor: concurrent.futures.Executor | None,
        on_progress: Callable[[], None],
    ) -> None:
        self.options = options
        self.inbox = inbox
        self.spool = spool
        self.counters = counters
        self.http: httpx.AsyncClient | None = None
        self.wake_event = asyncio.Event()
        self.closing = False
        self.stopped = False
        self.flush_waiters = 0
        self.settled = 0  # own events delivered or rejected, in queue order
        self._executor = executor
        self.on_progress = on_progress
        self._backoff = Backoff(options.backoff, options.max_backoff)
        self._next_attempt = 0.0
        self._last_drain = 0.0
        self._gave_up = False
        self._spooling_logged = False
        self._replays: deque[_Replay] = deque()  # the spool head, and one read ahead
        self.problem: ConfigurationError | None = None  # the setup problem blocking delivery
        self._logged_causes: set[str] = set()
        self._inflight: tuple[int, list[Record]] | None = None  # the queue, being spooled
        self._deliveries: deque[_Delivery] = deque()  # batches being sent, in ticket order
        self._last_delivery: _Delivery | None = None
        self._last_io: concurrent.futures.Future[Any] | None = None

    # -- control from the client -----------------------------------------------------------

    def wake(self) -> None:
        self.wake_event.set()

    def begin_close(self) -> None:
        """Stop lingering, deliver what is queued, and on the first failure spool the rest."""
        self.closing = True
        self.wake_event.set()

    # -- main loop -------------------------------------------------------------------------

    def _http_client(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        options = self.options
        return httpx.AsyncClient(
            base_url=options.base_url,
            headers={
                "Authorization": f"Bearer {options.api_key}",
                "User-Agent": options.user_agent,
            },
            timeout=options.timeout,
            transport=transport,
        )

    async def main(self, transport: httpx.AsyncBaseTransport | None) -> None:
        async with self._http_client(transport) as http:
            self.http = http
            try:
                await self.run()
            finally:
                self.http = None

    async def run(self) -> None:
        self.stopped = False
        self.wake_event = asyncio.Event()  # bound to the loop this run is on
        try:
            try:
                await self._io(self.spool.adopt_orphans)
            except OSError as exc:
                logger.warning("watchkeeper: could not scan the spool for old events: %s", exc)
            while True:
                try:
                    if self.spool.pending():
                        if not await self._spool_step():
                            return
                    elif not await self._direct_step():
                        return
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception:  # the sender must outlive any bug: log, pause, carry on
                    logger.exception("watchkeeper: unexpected error in the sender")
                    self._requeue_inflight()
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            for delivery in self._deliveries:
                if delivery.task is not None:
                    delivery.task.cancel()
            self.salvage()
            raise
        finally:
            tasks = [d.task for d in self._deliveries if d.task is not None and not d.task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            self.stopped = True
            self.on_progress()

    async def _io(self, function: Callable[[], T]) -> T:
        """Run blocking spool I/O: inline on the sync client's own loop, else in a thread."""
        if self._executor is None:
            return function()
        future = self._executor.submit(function)
        self._last_io = future
        return await asyncio.wrap_future(future)

    async def _wait_until(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        while True:
            self.wake_event.clear()
            if ready():
                return True
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return False
            try:
                async with asyncio.timeout(timeout):
                    await self.wake_event.wait()
            except TimeoutError:
                pass

    def _urgent(self) -> bool:
        return self.closing or self.inbox.pressure > 0 or self.flush_waiters > 0

    def _settle(self, count: int) -> None:
        self.settled += count
        self.on_progress()

    # -- direct mode -----------------------------------------------------------------------

    async def _direct_step(self) -> bool:
        inbox, options = self.inbox, self.options
        self._reap()
        if not inbox.items:
            if self.closing:
                await self._await_deliveries()
                return self.spool.pending()  # something was spooled: the spool step decides
            idle_until = time.monotonic() + options.rescan_interval
            woken = await self._wait_until(
                lambda: bool(inbox.items) or self.closing or self.spool.pending(), idle_until
            )
            if not woken:
                await self._io(self.spool.adopt_orphans)
            return True
        if len(self._deliveries) >= options.max_in_flight:
            await asyncio.wait(
                [d.task for d in self._deliveries if d.task is not None],
                return_when=asyncio.FIRST_COMPLETED,
            )
            return True
        await self._wait_until(
            lambda: inbox.full_batch() or self._urgent() or self.spool.pending(),
            inbox.first_at + options.linger,
        )
        taken = inbox.take(options.batch_size)
        if taken is not None:
            self._start_delivery(*taken)
        return True

    def _start_delivery(self, ticket: int, records: list[Record]) -> None:
        delivery = _Delivery(
            ticket,
            [event for kind, event in records if kind == "prediction"],
            [event for kind, event in records if kind == "outcome"],
            self._last_delivery,
        )
        self._last_delivery = delivery
        self._deliveries.append(delivery)
        delivery.task = asyncio.get_running_loop().create_task(self._deliver(delivery))

    def _reap(self) -> None:
        deliveries = self._deliveries
        while deliveries and deliveries[0].task is not None and deliveries[0].task.done():
            deliveries.popleft()
        if deliveries and any(d.task is not None and d.task.done() for d in deliveries):
            self._deliveries = deque(d for d in deliveries if d.task is None or not d.task.done())

    async def _await_deliveries(self) -> None:
        while self._deliveries:
            await asyncio.wait([d.task for d in self._deliveries if d.task is not None])
            self._reap()

    async def _deliver(self, delivery: _Delivery) -> None:
        """Send a batch: its predictions at once (other batches' requests may be in flight),
        its outcomes once every prediction taken before them is settled. On failure what is
        left goes to the spool under the batch's ticket, and so do the outcomes of the batches
        after it (they may refer to the spooled predictions)."""
        try:
            if not await self._send_directly(delivery, "prediction"):
                return  # spooled, outcomes included, under the ticket it still held
            self.spool.release(delivery.ticket)  # outcomes spooled later go after it anyway
            previous = delivery.previous
            if previous is not None:
                await previous.gate.wait()
                delivery.previous = None  # let finished batches be collected
                if not previous.clear:
                    await self._spool_delivery_until_done(delivery)
                    return
            delivery.clear = True
            delivery.gate.set()
            if await self._send_directly(delivery, "outcome"):
                self._backoff.reset()
        except asyncio.CancelledError:
            raise
        except Exception:  # the sender must outlive any bug: keep the events on disk
            logger.exception("watchkeeper: unexpected error sending a batch")
            await self._spool_delivery_until_done(delivery)
        finally:
            delivery.previous = None
            delivery.gate.set()  # ``clear`` stays False unless the outcomes could go
            self.wake_event.set()  # the main loop may have to go to spool mode

    async def _send_directly(self, delivery: _Delivery, kind: EventKind) -> bool:
        """Deliver the batch's events of ``kind``, retrying in memory ``max_retries`` times
        (fewer when callers wait for queue room or the client closes); then spool what is
        left of the batch and return False."""
        failures = 0
        while True:
            events = delivery.predictions if kind == "prediction" else delivery.outcomes
            if not events:
                return True
            progress = await self._send(kind, events)
            done = len(events) - len(progress.remaining)
            if done:
                left = [events[i] for i in progress.remaining]
                if kind == "prediction":
                    delivery.predictions = left
                else:
                    delivery.outcomes = left
                self._settle(done)
            if not progress.remaining:
                return True
            failures += 1
            delay = self._backoff.next_delay(progress.retry_after)
            deadline = time.monotonic() + delay
            if failures <= self.options.max_retries:
                await self._wait_until(self._must_spool, deadline)
                if not self._must_spool():
                    continue
            if await self._spool_delivery(delivery, deadline):
                return False
            await self._wait_until(lambda: False, deadline)  # could not spool: keep retrying

    async def _spool_delivery_until_done(self, delivery: _Delivery) -> None:
        while not await self._spool_delivery(delivery):
            deadline = time.monotonic() + self._backoff.next_delay(None)
            await self._wait_until(lambda: False, deadline)

    async def _spool_delivery(self, delivery: _Delivery, deadline: float | None = None) -> bool:
        """Write what is left of a batch to the spool under its ticket."""
        records = delivery.records()

        def write() -> None:
            self.spool.write(delivery.ticket, records)
            delivery.predictions = []
            delivery.outcomes = []

        try:
            await self._io(write)
        except SpoolError as exc:
            logger.error("watchkeeper: ingest unreachable and the spool failed: %s", exc)
            return False
        with self.counters.lock:
            self.counters.spooled += len(records)
        if deadline is not None:
            self._next_attempt = max(self._next_attempt, deadline)
        if self.closing:
            self._gave_up = True
        if records and not self._spooling_logged:
            self._spooling_logged = True
            logger.warning(
                "watchkeeper: ingest at %s not reachable, spooling events to %s",
                self.options.base_url,
                self.spool.directory,
            )
        return True

    def _requeue_inflight(self) -> None:
        """Put records taken for the spool back at the head of the queue and free the ticket."""
        if self._inflight is None:
            return
        ticket, records = self._inflight
        with self.inbox.lock:
            self.inbox.push_front(records)
        self.spool.release(ticket)
        self._inflight = None

    def _must_spool(self) -> bool:
        """Stop retrying in memory: we are closing, or callers are waiting for queue room."""
        return self.closing or self.inbox.pressure > 0

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, kind: EventKind, events: list[bytes]) -> _Progress:
        """POST one homogeneous batch; splits on 413, reports refusals and setup problems."""
        assert self.http is not None
        everything = list(range(len(events)))
        body, headers = encode_batch(events, compress=self.options.compress)
        try:
            response = await self.http.post(PATHS[kind], content=body, headers=headers)
        except httpx.HTTPError as exc:
            logger.debug("watchkeeper: POST %s failed: %r", PATHS[kind], exc)
            self._count_retry()
            return _Progress(everything)
        except Exception:  # a broken custom transport: retry rather than lose the batch
            logger.exception("watchkeeper: POST %s failed unexpectedly", PATHS[kind])
            self._count_retry()
            return _Progress(everything)
        reply = classify(response.status_code, response.headers, response.content, events)
        if reply.action is Action.RETRY:
            logger.debug("watchkeeper: ingest answered %s, retrying later", reply.status_code)
            self._count_retry()
            return _Progress(everything, reply.retry_after)
        if reply.action is Action.SPLIT:
            return await self._halves(kind, events)
        if reply.action is Action.HOLD:
            self._hold(reply, len(events))
            return _Progress(everything, reply.retry_after)
        refused = len(reply.rejected)
        with self.counters.lock:
            self.counters.sent += len(events) - refused - len(reply.held)
            self.counters.duplicates += reply.duplicates
            self.counters.rejected += refused
        if refused:
            detail = reply.detail if reply.action is Action.REJECT else ""
            detail = detail or "; ".join(
                f"{r.event_id}: {r.field + ': ' if r.field else ''}{r.reason}"
                for r in reply.rejected[:5]
            )
            self._report(DeliveryError(kind, reply.status_code, detail, reply.rejected))
        if reply.held:
            if reply.cause is not None:
                self._hold(reply, len(reply.held))
            else:  # only not taken because others were refused: send them again
                self._count_retry()
        else:
            self._resolved()
        return _Progress(list(reply.held), reply.retry_after)

    async def _halves(self, kind: EventKind, events: list[bytes]) -> _Progress:
        """Send the first half, then (if it all went) the second; in order either way."""
        half = len(events) // 2
        first = await self._send(kind, events[:half])
        if first.remaining:
            return _Progress(first.remaining + list(range(half, len(events))), first.retry_after)
        second = await self._send(kind, events[half:])
        return _Progress([half + i for i in second.remaining], second.retry_after)

    def _hold(self, reply: Reply, count: int) -> None:
        """Events kept because of a setup problem: count them, say so once per cause."""
        cause = reply.cause or Cause.NOT_FOUND
        with self.counters.lock:
            self.counters.held += count
            self.counters.held_by_cause[cause] = self.counters.held_by_cause.get(cause, 0) + count
            self.counters.retried += 1
        message = problem_message(self.options.base_url, cause, reply.status_code, reply.detail)
        self.problem = ConfigurationError(
            cause,
            reply.status_code,
            reply.detail,
            f"events are kept and retried, not delivered: {message}",
        )
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            logger.error("watchkeeper: %s; events are kept (spooled) and retried", message)

    def _resolved(self) -> None:
        if self.problem is not None:
            self.problem = None
            self._logged_causes.clear()
            logger.warning("watchkeeper: ingest takes events again; delivering the kept ones")

    async def probe(self, transport: httpx.AsyncBaseTransport | None) -> None:
        """POST an empty batch: ingest checks the key and answers 202 taking nothing.

        Raises :class:`ConfigurationError` unless the URL leads to ingest and the key is known.
        """
        options = self.options
        url = options.base_url

        def unreachable(detail: str) -> ConfigurationError:
            message = problem_message(url, Cause.UNREACHABLE, None, detail)
            return ConfigurationError(Cause.UNREACHABLE, None, detail, f"{message}; unreachable")

        async with contextlib.AsyncExitStack() as stack:
            http = self.http
            if http is None:
                http = await stack.enter_async_context(self._http_client(transport))
            try:
                response = await http.post(
                    PATHS["prediction"], content=b"[]", headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                raise unreachable(repr(exc)) from None
        reply = classify(response.status_code, response.headers, response.content, [])
        if reply.action is Action.HOLD:
            assert reply.cause is not None
            message = problem_message(url, reply.cause, reply.status_code, reply.detail)
            raise ConfigurationError(reply.cause, reply.status_code, reply.detail, message)
        if reply.action is Action.RETRY:
            raise unreachable(f"HTTP {reply.status_code}: {reply.detail}")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            answer = None
        if not (200 <= response.status_code < 300 and isinstance(answer, dict)):
            detail = f"not an ingest answer: HTTP {response.status_code}"
            message = problem_message(url, Cause.NOT_FOUND, response.status_code, detail)
            raise ConfigurationError(Cause.NOT_FOUND, response.status_code, detail, message)

    def _count_retry(self) -> None:
        with self.counters.lock:
            self.counters.retried += 1

    def _report(self, error: DeliveryError) -> None:
        logger.warning("watchkeeper: %s", error)
        callback = self.options.on_error
        if callback is None:
            return
        try:
            callback(error)
        except Exception:
            logger.exception("watchkeeper: the on_error callback raised")

    # -- spool mode ------------------------------------------------------------------------

    async def _spool_step(self) -> bool:
        """Replay the spool head; move the queue to the spool when callers need room, when
        closing, or every ``linger`` while ingest is not taking events (so they are on disk).
        While the replay goes well the queue waits in memory and is sent directly once the
        spool is empty, rather than taking a detour through the disk."""
        inbox, options = self.inbox, self.options
        await self._await_deliveries()
        now = time.monotonic()
        failing = now < self._next_attempt
        if inbox.items and (
            self._must_spool() or (failing and now - self._last_drain >= options.linger)
        ):
            await self._drain_inbox()
        if self.closing and (self._gave_up or now < self._next_attempt):
            await self._drain_inbox()
            return False
        if now >= self._next_attempt:
            if not self._replays:
                head = await self._io(lambda: self.spool.read_head(options.batch_size))
                if head is not None:
                    self._replays.append(_Replay(head, [False] * len(head.records)))
            if self._replays:
                await self._replay()
                return True
            if not self.spool.pending():
                self._left_spool_mode()
                return True
            deadline = now + min(options.linger, 0.05)  # a caller is still writing its spill
        else:
            deadline = min(self._next_attempt, now + options.linger)
        await self._wait_until(
            lambda: (bool(inbox.items) and self._must_spool()) or self.closing, deadline
        )
        return True

    async def _drain_inbox(self) -> None:
        self._last_drain = time.monotonic()
        taken = self.inbox.take_all()
        if taken is None:
            return
        ticket, records = taken
        self._inflight = taken

        def write() -> None:
            self.spool.write(ticket, records)
            self._inflight = None

        try:
            await self._io(write)
        except SpoolError as exc:
            logger.error("watchkeeper: could not spool queued events: %s", exc)
            with self.inbox.lock:
                self.inbox.push_front(records)
            self.spool.release(ticket)
            self._inflight = None
            return
        with self.counters.lock:
            self.counters.spooled += len(records)

    async def _send_kind(self, replay: _Replay, kind: EventKind) -> _Progress | None:
        """Send the unsettled events of one kind of a head and mark them settled (counted
        once committed). Returns the failed progress, or None when all of them are settled."""
        head, settled = replay.head, replay.settled
        indexes = [i for i, (k, _) in enumerate(head.records) if k == kind and not settled[i]]
        if not indexes:
            return None
        progress = await self._send(kind, [head.records[i][1] for i in indexes])
        kept = {indexes[j] for j in progress.remaining}
        for i in indexes:
            if i not in kept:
                settled[i] = True
                replay.uncounted += 1
        return progress if kept else None

    async def _replay(self) -> None:
        """Replay the spool head and the events right after it (read ahead in the same
        segment), up to ``max_in_flight`` heads at once: each head's predictions at once, its
        outcomes once the predictions of every head up to it are settled; then commit, in
        order, the prefix of settled events. Heads not fully settled are kept for the next
        attempt, their settled events are not sent again."""
        replays, options = self._replays, self.options
        while len(replays) < options.max_in_flight:
            read = functools.partial(self.spool.read_after, replays[-1].head, options.batch_size)
            ahead = await self._io(read)
            if ahead is None:
                break
            replays.append(_Replay(ahead, [False] * len(ahead.records)))
        heads = list(replays)
        gates = [asyncio.Event() for _ in heads]
        clear = [False] * len(heads)  # predictions settled up to and including this head

        async def replay_head(number: int) -> _Progress | None:
            try:
                failed = await self._send_kind(heads[number], "prediction")
                if failed is None and number > 0:
                    await gates[number - 1].wait()
                clear[number] = failed is None and (number == 0 or clear[number - 1])
            finally:
                gates[number].set()
            if failed is not None or not clear[number]:
                return failed  # outcomes wait for the next attempt (an earlier head failed)
            return await self._send_kind(heads[number], "outcome")

        results = await asyncio.gather(*(replay_head(number) for number in range(len(heads))))
        failed = next((result for result in results if result is not None), None)
        replays_before = list(replays)
        for replay in replays_before:
            settled = replay.settled
            prefix = replay.committed
            while prefix < len(settled) and settled[prefix]:
                prefix += 1
            if prefix > replay.committed:
                await self._io(functools.partial(self.spool.commit, replay.head, prefix))
                replay.committed = prefix
            if prefix < len(settled):
                break  # what follows may only be committed after it
            replays.popleft()
        for replay in replays_before:
            newly, replay.uncounted = replay.uncounted, 0
            if newly:
                with self.counters.lock:
                    self.counters.replayed += newly
                if replay.head.own:
                    self._settle(newly)
        if failed is not None:
            delay = self._backoff.next_delay(failed.retry_after)
            self._next_attempt = time.monotonic() + delay
            if self.closing:
                self._gave_up = True
        else:
            self._backoff.reset()
            self._next_attempt = 0.0

    def _left_spool_mode(self) -> None:
        if self._spooling_logged:
            self._spooling_logged = False
            logger.info("watchkeeper: spool replayed, sending directly again")

    # -- shutdown --------------------------------------------------------------------------

    def salvage(self) -> None:
        """Write whatever is in memory to the spool, synchronously (cancellation or exit)."""
        if self._last_io is not None:
            concurrent.futures.wait([self._last_io])
        pending: list[tuple[int, list[Record]]] = []
        if self._inflight is not None:
            pending.append(self._inflight)
        for delivery in self._deliveries:
            records = delivery.records()
            delivery.predictions = []
            delivery.outcomes = []
            if records:
                pending.append((delivery.ticket, records))
        taken = self.inbox.take_all()
        if taken is not None:
            pending.append(taken)
        for ticket, records in sorted(pending, key=lambda item: item[0]):
            try:
                self.spool.write(ticket, records)
            except SpoolError as exc:
                logger.critical(
                    "watchkeeper: %d events could not be spooled at shutdown: %s",
                    len(records),
                    exc,
                )
                continue
            with self.counters.lock:
                self.counters.spooled += len(records)
        self._inflight = None

    def stats(self) -> Stats:
        counters = self.counters
        with counters.lock:
            return Stats(
                queued=len(self.inbox.items),
                sent=counters.sent,
                duplicates=counters.duplicates,
                rejected=counters.rejected,
                retried=counters.retried,
                spooled=counters.spooled,
                replayed=counters.replayed,
                unreadable=counters.unreadable,
                spool_backlog_bytes=self.spool.backlog_bytes,
                held=counters.held,
                held_by_cause=dict(counters.held_by_cause),
                problem=None if self.problem is None else str(self.problem),
            )
