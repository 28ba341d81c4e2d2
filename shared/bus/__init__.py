"""The event bus: one interface, a Kafka and an in-process implementation."""

from shared.bus.base import (
    Bus,
    BusUnavailable,
    Consumer,
    PartitionsCallback,
    Producer,
    Record,
    RecordMetadata,
    TopicPartition,
    Topics,
    TopicSpec,
)
from shared.bus.factory import bus_from_settings
from shared.bus.kafka import KafkaBus
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.bus.worker import DLQ_HEADERS, Decoded, StreamWorker, dead_letter, start_consumer

__all__ = [
    "DLQ_HEADERS",
    "Bus",
    "BusUnavailable",
    "Consumer",
    "Decoded",
    "KafkaBus",
    "MemoryBroker",
    "MemoryBus",
    "PartitionsCallback",
    "Producer",
    "Record",
    "RecordMetadata",
    "StreamWorker",
    "TopicPartition",
    "TopicSpec",
    "Topics",
    "bus_from_settings",
    "dead_letter",
    "start_consumer",
]
