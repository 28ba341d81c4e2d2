from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Route", "Settings"]


class Route(BaseModel):
    """Notify ``receiver`` at ``url`` (an Alertmanager-compatible webhook) for records whose
    labels match every matcher (keys: system_id, severity, classification; none: everything)."""

    receiver: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    matchers: dict[str, str] = Field(default_factory=dict)


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_ALERTS_", extra="ignore")

    port: int = 8004
    group_id: str = "alerts"
    due_days_major: int = Field(default=30, ge=1)
    due_days_minor: int = Field(default=60, ge=1)
    due_days_observation: int = Field(default=90, ge=1)
    """Days from raising to a record's due date, by classification."""
    consumer_max_records: int = Field(default=5000, ge=1)
    """Evaluations applied per transaction at most (a backlog is read in batches this big)."""
    effectiveness_windows: int = Field(default=3, ge=1)
    """Consecutive met windows after the actions that confirm them (review evidence)."""
    routes: list[Route] = Field(default_factory=list)
    """Webhook routes, e.g. WK_ALERTS_ROUTES='[{"receiver": "qm", "url": "http://…"}]'."""
    notify_max_attempts: int = Field(default=5, ge=1)
    notify_backoff_s: float = Field(default=1.0, gt=0)
    """Delay before the 2nd attempt; doubled after each failure."""
    notify_poll_s: float = Field(default=1.0, gt=0)
    notify_timeout_s: float = Field(default=5.0, gt=0)
    reminder_repeat_s: float = Field(default=86_400.0, gt=0)
    """How often an overdue corrective action is reminded again."""

    def due_days(self) -> dict[str, int]:
        return {
            "major": self.due_days_major,
            "minor": self.due_days_minor,
            "observation": self.due_days_observation,
        }
