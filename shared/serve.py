"""Run one service app in its own process (``python -m services.<name>``)."""

from __future__ import annotations

import gc
import logging

import uvicorn
from fastapi import FastAPI

from shared.settings import CommonSettings

__all__ = ["configure_logging", "serve", "tune_gc"]


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


def serve(app: FastAPI, settings: CommonSettings) -> None:
    tune_gc(settings)
    configure_logging(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
