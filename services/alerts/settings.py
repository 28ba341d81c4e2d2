from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_ALERTS_", extra="ignore")

    port: int = 8004
    group_id: str = "alerts"
    due_days_major: int = Field(default=30, ge=1)
    due_days_minor: int = Field(default=60, ge=1)
    due_days_observation: int = Field(default=90, ge=1)
    """Days from raising to a record's due date, by classification."""
    effectiveness_windows: int = Field(default=3, ge=1)
    """Consecutive met windows after the actions that confirm them (review evidence)."""

    def due_days(self) -> dict[str, int]:
        return {
            "major": self.due_days_major,
            "minor": self.due_days_minor,
            "observation": self.due_days_observation,
        }
