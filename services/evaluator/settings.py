from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_EVALUATOR_", extra="ignore")

    port: int = 8003
    group_id: str = "evaluator"
    tick_s: float = Field(default=0.5, gt=0)
    allowed_lateness_s: float = Field(default=5.0, ge=0)
    idle_close_s: float = Field(
        default=10.0,
        gt=0,
        description="A system that sent nothing for this long has its ended windows closed "
        "by wall-clock time, so a quiet stream is still evaluated.",
    )
