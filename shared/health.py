"""Liveness and readiness endpoints every service exposes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

__all__ = ["ReadinessCheck", "health_router"]

ReadinessCheck = Callable[[], Awaitable[bool]]


def health_router(service: str, checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    """/healthz answers while the process lives; /readyz only when every dependency is ready."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": service, "checks": results},
            status_code=200 if ready else 503,
        )

    return router
