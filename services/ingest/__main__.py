"""Run ingest alone: ``python -m services.ingest`` (settings from WK_INGEST_*).

With ``WK_INGEST_WORKERS=N`` (N > 1) uvicorn runs N processes, each building its own app with
:func:`worker_app` from the same environment: ingest is CPU-bound in Python, so this is how it
uses more than one core. Every worker is an independent ingest instance (own producer, own
rate-limit buckets, own id in the duplicate store).
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.serve import configure_logging, serve, tune_gc

from .app import create_app
from .settings import Settings


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process (``--factory``)."""
    settings = Settings()
    app = create_app(settings)
    tune_gc(settings)
    return app


if __name__ == "__main__":
    settings = Settings()
    if settings.workers > 1:
        configure_logging(settings)
        uvicorn.run(
            "services.ingest.__main__:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    else:
        serve(create_app(settings), settings)
