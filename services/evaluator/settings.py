from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_EVALUATOR_", extra="ignore")

    port: int = 8003
    group_id: str = "evaluator"
    registry_url: str = Field(
        default="http://127.0.0.1:8001",
        description="Base URL of the registry, which serves reference profiles by hash.",
    )
    tick_s: float = Field(default=0.5, gt=0, description="Longest wait for records per poll.")
    allowed_lateness_s: float = Field(
        default=5.0,
        ge=0,
        description="A window closes once the system's newest prediction time passes its end "
        "by this much; predictions for a closed window are counted as late.",
    )
    idle_close_s: float = Field(
        default=10.0,
        gt=0,
        description="A live system that sent nothing for this long (and the consumer has no "
        "lag) has its watermarks moved to wall-clock time, so a quiet stream is still evaluated.",
    )
    live_window_s: float = Field(
        default=3600.0,
        ge=0,
        description="A system is live (idle closing applies) while its newest event time is "
        "within this of the wall clock; an older (historical, backfilled) stream closes its "
        "windows only as its event time progresses, so a pause in a backfill loses nothing.",
    )
    max_future_skew_s: float = Field(
        default=3600.0,
        ge=0,
        description="Events timed more than this ahead of the wall clock are refused (counted "
        "as future_predictions / future_outcomes), never applied to windows or watermarks. "
        "Keep it at least ingest's max_future_skew_s (same default), or events ingest "
        "answered 202 are refused here.",
    )
    label_wait_s: float = Field(
        default=3600.0,
        ge=0,
        description="How far (event time) the predictions may run ahead of a system's outcome "
        "stream before label metrics are evaluated without waiting for it.",
    )
    revision_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Late labels revise a window at most once per max(window, this) of event time.",
    )
    checkpoint_interval_s: float = Field(default=1.0, gt=0)
    checkpoint_max_records: int = Field(default=200_000, ge=1)
    max_poll_records: int = Field(default=5_000, ge=1)
    decode_ahead: bool = Field(
        default=True,
        description="Poll and decode the next batch while the current one is applied.",
    )
    outcome_lead_s: float = Field(
        default=10.0,
        ge=0,
        description="In a backlog, outcomes more than this far (event time) ahead of their "
        "system's newest prediction wait in memory until the predictions catch up, so they "
        "join their predictions in memory instead of through the store.",
    )
    outcome_hold_max_events: int = Field(
        default=200_000,
        ge=0,
        description="Most outcome events held back per partition (0: never hold any).",
    )
    max_empty_windows: int = Field(
        default=1_000,
        ge=0,
        description="Most empty windows (volume 0) evaluated for one gap in a system's stream.",
    )
