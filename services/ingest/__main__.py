"""Run ingest alone: ``python -m services.ingest`` (settings from WK_INGEST_*)."""

from shared.serve import serve

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(create_app(settings), settings)
