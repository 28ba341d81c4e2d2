"""The bus interface both implementations (Kafka, in-process) satisfy.

Semantics every implementation keeps, and the contract tests check:
- a keyed record goes to one partition chosen from its key, so records of one key stay ordered;
- ``Producer.send`` returns only once the record is durably acknowledged;
- a consumer in a group sees the partitions assigned to it; positions start at the group's
  committed offsets, so records polled but not committed are delivered again after a restart
  (at-least-once);
- a consumer without a group reads every partition from the beginning and commits nothing
  (how services rebuild tables such as the registry snapshot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Bus",
    "BusUnavailable",
    "Consumer",
    "PartitionsCallback",
    "Producer",
    "Record",
    "RecordMetadata",
    "TopicPartition",
    "TopicSpec",
    "Topics",
]


class BusUnavailable(Exception):
    """The bus could not accept or acknowledge a record in time; the caller may retry."""


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 3
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under a configurable prefix (ARCHITECTURE.md, 'Kafka topics')."""

    prefix: str = "wk."
    partitions: int = 3
    names: tuple[str, ...] = field(
        default=("predictions", "outcomes", "evaluations", "registry", "nonconformities", "dlq"),
        repr=False,
    )

    @property
    def predictions(self) -> str:
        return f"{self.prefix}predictions"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}outcomes"

    @property
    def evaluations(self) -> str:
        return f"{self.prefix}evaluations"

    @property
    def registry(self) -> str:
        return f"{self.prefix}registry"

    @property
    def nonconformities(self) -> str:
        return f"{self.prefix}nonconformities"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def specs(self) -> list[TopicSpec]:
        return [
            TopicSpec(f"{self.prefix}{name}", self.partitions, compacted=name == "registry")
            for name in self.names
        ]


PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None]]
"""on_assign runs after every completed group join, with the partitions newly assigned (on
Kafka possibly none: more members than partitions); on_revoke before a rebalance moves any."""


class Producer(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> RecordMetadata:
        """Send one record and wait for its acknowledgement (raises BusUnavailable)."""
        ...

    async def send_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes | None]]
    ) -> list[RecordMetadata]:
        """Send (key, value) records concurrently; return once every one is acknowledged."""
        ...


class Consumer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Leave the group without committing anything not yet committed."""
        ...

    async def poll(self, *, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        """Next records of the assigned partitions (empty after timeout_s without any)."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit next-offsets (default: the position after everything polled)."""
        ...

    async def rewind(self) -> None:
        """Move every assigned partition back to its committed offset (redeliver)."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    async def lag(self) -> int:
        """Records between the current positions and the ends of the assigned partitions."""
        ...

    async def lags(self) -> dict[TopicPartition, int]:
        """``lag`` per assigned partition."""
        ...


class Bus(Protocol):
    topics: Topics

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool:
        """True when records can be produced and consumed right now."""
        ...

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None: ...

    @property
    def producer(self) -> Producer: ...

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str | None,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> Consumer: ...
