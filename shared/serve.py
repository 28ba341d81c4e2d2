"""Run one service app in its own process (``python -m services.<name>``)."""

from __future__ import annotations

import copy
import gc
import logging
from typing import Any

import uvicorn
from fastapi import FastAPI

from shared.settings import CommonSettings

__all__ = ["QuietProbes", "configure_logging", "log_config", "serve", "tune_gc"]


def tune_gc(settings: CommonSettings) -> None:
    """Fewer garbage collections for a service process that decodes thousands of objects per
    batch: ``gc.freeze()`` moves everything alive now (modules, classes, the app) out of the
    collector's sight, so the collections that remain only walk batch-sized garbage, and they
    run after ``settings.gc_threshold`` allocations instead of 700. Only for a service's own
    process: the embedded platform and the tests keep Python's defaults."""
    if settings.gc_threshold:
        gc.collect()
        gc.freeze()
        _, second, third = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, second, third)


def configure_logging(settings: CommonSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


PROBE_PATHS = ("/healthz", "/readyz", "/metrics")


class QuietProbes(logging.Filter):
    """Leave health probes and Prometheus scrapes out of uvicorn's access log: they come every
    few seconds and bury the requests a person made (their outcome is in /metrics)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2].split("?", 1)[0]  # (client, method, path, http version, status)
            return not path.endswith(PROBE_PATHS)  # also /<service>/readyz (embedded)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with QuietProbes on the access log."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["quiet_probes"] = {"()": QuietProbes}
    config["handlers"]["access"].setdefault("filters", []).append("quiet_probes")
    return config


def serve(app: FastAPI, settings: CommonSettings) -> None:
    tune_gc(settings)
    configure_logging(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=log_config(),
    )
