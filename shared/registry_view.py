"""A read-only, always-current view of the registry, rebuilt from the compacted topic.

Ingest, evaluator and alerts each hold one: on start it reads the registry topic from the
beginning (no consumer group, nothing committed), then follows it, so a change made in the
registry reaches them within one poll, without polling the registry's HTTP API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from shared.bus.base import Bus, Record
from shared.bus.worker import Decoded, StreamWorker
from shared.contracts import Objective, ObjectiveStatus, SystemSnapshot, decode

__all__ = ["RegistryView"]


class _Tombstone:
    pass


def _decode(record: Record) -> SystemSnapshot | _Tombstone:
    if record.value is None:
        return _Tombstone()
    return decode(SystemSnapshot, record.value)


class RegistryView:
    def __init__(
        self,
        bus: Bus,
        *,
        name: str,
        on_dead_letter: Callable[[Record, str], None] | None = None,
    ) -> None:
        self.systems: dict[str, SystemSnapshot] = {}
        self._listeners: list[Callable[[SystemSnapshot], None]] = []
        self._worker: StreamWorker[SystemSnapshot | _Tombstone] = StreamWorker(
            bus=bus,
            name=f"{name}:registry-view",
            topics=[bus.topics.registry],
            group_id=None,
            decode=_decode,
            handle=self._apply,
            on_dead_letter=on_dead_letter,
        )

    def on_change(self, listener: Callable[[SystemSnapshot], None]) -> None:
        self._listeners.append(listener)

    async def _apply(self, batch: Sequence[Decoded[SystemSnapshot | _Tombstone]]) -> None:
        for item in batch:
            key = item.record.key.decode() if item.record.key else None
            if isinstance(item.value, _Tombstone):
                if key is not None:
                    self.systems.pop(key, None)
                continue
            self.systems[item.value.system_id] = item.value
            for listener in self._listeners:
                listener(item.value)

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    @property
    def loaded(self) -> bool:
        return self._worker.caught_up.is_set()

    async def wait_loaded(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._worker.caught_up.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def get(self, system_id: str) -> SystemSnapshot | None:
        return self.systems.get(system_id)

    def objective(self, system_id: str, objective_id: str) -> Objective | None:
        system = self.systems.get(system_id)
        if system is None:
            return None
        return next((o for o in system.objectives if o.id == objective_id), None)

    def active_objectives(self, system_id: str) -> list[Objective]:
        system = self.systems.get(system_id)
        if system is None:
            return []
        return [o for o in system.objectives if o.status is ObjectiveStatus.ACTIVE]
