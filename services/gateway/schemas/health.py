"""Liveness and readiness answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    """The process is up."""

    ok: Literal[True] = True


class Readiness(BaseModel):
    """Every backend answers its health check."""

    ok: bool = Field(description="True when every dependency is up.")
    dependencies: dict[str, Literal["up", "down"]] = Field(description="Health of each backend service.")
