"""Run ingest alone: ``python -m services.ingest`` (settings from WK_INGEST_*).

With ``WK_INGEST_WORKERS=N`` (N > 1) uvicorn runs N processes, each building its own app with
``create_app()`` from the same environment: ingest is CPU-bound in Python, so this is how it
uses more than one core. Every worker is an independent ingest instance (own producer, own
rate-limit buckets, own id in the duplicate store).
"""

import logging

import uvicorn

from shared.serve import serve

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    settings = Settings()
    if settings.workers > 1:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        uvicorn.run(
            "services.ingest.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    else:
        serve(create_app(settings), settings)
