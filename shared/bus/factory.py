"""Build the bus a service's settings ask for."""

from __future__ import annotations

from shared.bus.base import Bus, Topics
from shared.bus.kafka import KafkaBus
from shared.bus.memory import MemoryBus
from shared.settings import CommonSettings

__all__ = ["bus_from_settings"]


def bus_from_settings(settings: CommonSettings) -> Bus:
    topics = Topics(prefix=settings.topic_prefix, partitions=settings.topic_partitions)
    if settings.bus == "memory":
        return MemoryBus(topics=topics)
    return KafkaBus(
        settings.kafka_bootstrap,
        topics,
        send_timeout_s=settings.kafka_send_timeout_s,
        replication_factor=settings.kafka_replication_factor,
    )
