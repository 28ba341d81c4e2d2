"""Settings every service shares; each service subclasses them with its own env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings"]


class CommonSettings(BaseSettings):
    """Read when ``create_app()`` runs, never at import time.

    The env prefix is the service's (``WK_INGEST_``, ``WK_REGISTRY_`` ...), so one host can run
    services against different brokers or databases.
    """

    model_config = SettingsConfigDict(env_prefix="WK_", extra="ignore")

    bus: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_send_timeout_s: float = Field(default=5.0, gt=0)
    kafka_replication_factor: int = Field(default=1, ge=1)
    topic_prefix: str = "wk."
    topic_partitions: int = Field(default=3, ge=1)
    database_url: str = "sqlite:///./watchkeeper.db"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    auth_secret: SecretStr | None = None
    """HMAC key of user tokens (shared.auth); None = open mode: nothing is checked."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body; 413 beyond, before the route reads it (``shared.request_guard``;
    the registry's reference uploads have their own ``max_reference_bytes``)."""
    gc_threshold: int = Field(default=20_000, ge=0)
    """Generation-0 threshold of the garbage collector when the service runs as its own
    process (``shared.serve``; 0: Python's default of 700). Decoding a batch makes thousands
    of short-lived, acyclic objects that reference counting frees; at 700 the collector runs
    dozens of times per batch (docs/performance.md: ~30 % of ingest's CPU)."""
