from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_INGEST_", extra="ignore")

    port: int = 8002
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
    retry_after_s: int = Field(default=2, ge=1)
