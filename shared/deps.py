"""FastAPI dependencies that read what a service's ``create_app`` put on ``app.state``: each
service's ``deps.py`` names its own with :class:`FromState`."""

from typing import Generic, TypeVar

from starlette.requests import HTTPConnection

__all__ = ["FromState"]

T = TypeVar("T")


class FromState(Generic[T]):
    """``app.state.<name>`` as a dependency (``Depends(FromState[Database]("db"))``) and, for
    helpers that only hold the request, as ``.of(request)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def of(self, connection: HTTPConnection) -> T:
        value: T = getattr(connection.app.state, self.name)
        return value

    async def __call__(self, connection: HTTPConnection) -> T:
        """Async, so FastAPI calls it in the event loop (a plain function costs a thread hop);
        this module has no ``from __future__ import annotations`` so FastAPI sees the type."""
        return self.of(connection)
