"""Run the alerts alone: ``python -m services.alerts`` (settings from WK_ALERTS_*)."""

from shared.serve import serve

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(create_app(settings), settings)
