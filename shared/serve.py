"""Run one service app in its own process (``python -m services.<name>``)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from shared.settings import CommonSettings

__all__ = ["serve"]


def serve(app: FastAPI, settings: CommonSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
