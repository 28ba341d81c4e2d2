"""What every ingest request needs, built once per app by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.bus import Bus
from shared.contracts import DEFAULT_LABEL_HORIZON_SECONDS
from shared.registry_view import RegistryView

from .dedup import DedupStore
from .delivery import DeliveryFollower
from .fastdecode import FastDecoders
from .keys import KeyIndex
from .limits import RateLimiter
from .metrics import IngestMetrics
from .settings import Settings
from .validation import SchemaChecks

__all__ = ["IngestContext"]


@dataclass
class IngestContext:
    settings: Settings
    bus: Bus
    view: RegistryView
    metrics: IngestMetrics
    keys: KeyIndex
    limiter: RateLimiter
    dedup: DedupStore | None
    follower: DeliveryFollower
    checks: SchemaChecks = field(default_factory=SchemaChecks)
    fast: FastDecoders = field(init=False)

    def __post_init__(self) -> None:
        self.fast = FastDecoders(self.settings.max_string_chars)

    @property
    def auth_required(self) -> bool:
        return self.settings.auth_secret is not None

    def horizon_s(self, system_id: str) -> float:
        """How long an event_id of the system counts as seen: its label horizon."""
        system = self.view.get(system_id)
        horizon = DEFAULT_LABEL_HORIZON_SECONDS if system is None else system.label_horizon_seconds
        return float(horizon)
