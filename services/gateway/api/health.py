"""Liveness and readiness probes."""

import logging

from fastapi import APIRouter

from services.gateway.adapters.backends import Backends
from services.gateway.http.errors import unavailable_error
from services.gateway.http.params import documented
from services.gateway.schemas.health import Liveness, Readiness

log = logging.getLogger(__name__)


def health_router(backends: Backends) -> APIRouter:
    """/healthz (the process is up) and /readyz (every backend answers its health check)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Liveness, summary="The process is up")
    async def healthz() -> Liveness:
        return Liveness()

    @router.get("/readyz", **documented(Readiness, "Every backend answers its gRPC health check", 503))
    async def readyz() -> Readiness:
        serving = await backends.readiness()
        dependencies = {name: "up" if up else "down" for name, up in serving.items()}
        down = sorted(name for name, up in serving.items() if not up)
        if down:
            log.warning("not ready: %s down", ", ".join(down))
            message = f"not ready: {', '.join(down)} unavailable"
            raise unavailable_error(message, {"dependencies": dependencies})
        return Readiness(ok=True, dependencies=dependencies)

    return router
