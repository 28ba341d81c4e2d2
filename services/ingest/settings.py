from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_INGEST_", extra="ignore")

    port: int = 8002
    workers: int = Field(default=1, ge=1)
    """uvicorn worker processes for ``python -m services.ingest`` (one event loop each)."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
    max_string_chars: int = Field(default=1024, ge=1)
    """Longest feature, attribute or score name or value, prediction or actual string."""
    max_future_skew_s: float = Field(default=3600.0, ge=0)
    """Event times further ahead of ingest's clock are refused (field ``timestamp``)."""
    backfill_allowance_s: float = Field(default=7 * 24 * 3600.0, ge=0)
    """Event times older than the system's label horizon plus this are refused."""
    parse_in_thread_bytes: int = Field(default=1024 * 1024, ge=0)
    """Bodies larger than this (gzip: a sixteenth of it) are parsed in a worker thread."""
    retry_after_s: int = Field(default=2, ge=1)
    rate_limit_events_per_s: float | None = Field(default=100_000.0, gt=0)
    """Per AI system and ingest instance; None disables the limit."""
    rate_limit_burst_s: float = Field(default=1.0, gt=0)
    """Bucket size, in seconds' worth of the rate."""
    rate_limits: dict[str, float] = Field(default_factory=dict)
    """Per-system overrides of ``rate_limit_events_per_s`` (system_id -> events/s)."""
    dedup: bool = True
    """Detect duplicate event_ids within the label horizon (database-backed, see dedup.py)."""
    dedup_lease_s: float = Field(default=15.0, gt=0)
    dedup_heartbeat_s: float = Field(default=0.5, gt=0)
    dedup_purge_interval_s: float = Field(default=60.0, gt=0)
