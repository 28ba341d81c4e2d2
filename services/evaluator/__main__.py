"""Run the evaluator alone: ``python -m services.evaluator`` (settings from WK_EVALUATOR_*)."""

from shared.serve import serve

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(create_app(settings), settings)
