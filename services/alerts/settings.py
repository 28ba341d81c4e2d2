from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_ALERTS_", extra="ignore")

    port: int = 8004
    group_id: str = "alerts"
