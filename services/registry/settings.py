from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from sqlalchemy import make_url

from shared.settings import CommonSettings

from .profiling import COLLECT_BUDGET

__all__ = ["Settings"]


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WK_REGISTRY_", extra="ignore")

    port: int = 8001
    reference_dir: Path | None = None
    """Where uploads and validated reference data live; default: beside a SQLite database
    file (``<db dir>/references``), else ``.run/registry/references``."""
    max_reference_bytes: int = Field(default=20 << 30, ge=1)
    reference_collect_budget: int = Field(default=COLLECT_BUDGET, ge=1000)
    """Values held in memory per quantile-selection pass (services.registry.profiling)."""

    def references_path(self) -> Path:
        if self.reference_dir is not None:
            return self.reference_dir
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(url.database).resolve().parent / "references"
        return Path(".run/registry/references")
