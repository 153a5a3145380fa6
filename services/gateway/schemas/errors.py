"""Every error answer: `{"ok": false, "error": {"code", "message", "errors"?, ...}}`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One invalid input."""

    loc: list[str | int] = Field(description='Where the invalid input is, e.g. `["items", 3, "prompt"]`.')
    code: str = Field(
        description="Stable code of the broken rule, e.g. empty, too_long, too_many, control_character, "
        "out_of_range, invalid_url, missing, string_type."
    )
    message: str = Field(description="What is wrong with it.")
    field: str = Field(description="`loc` as one path, e.g. `items[3].prompt`.")


class ErrorDetail(BaseModel):
    """What went wrong; backend refusals may add facts (strings unless documented here)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description=(
            "Stable reason: unauthorized, forbidden, not_found, method_not_allowed, idempotency_key_reused, "
            "insufficient_credits, debt_outstanding, payload_too_large, validation_error, rate_limited, "
            "unavailable, internal."
        )
    )
    message: str = Field(description="Human-readable explanation.")
    errors: list[FieldError] | None = Field(
        default=None,
        description="Every invalid input of the request at once, at most 100 (validation_error).",
    )
    required_credits: int | None = Field(default=None, description="Batch price (insufficient_credits).")
    available_credits: int | None = Field(default=None, description="Balance (insufficient_credits).")
    debt_credits: int | None = Field(default=None, description="Credits owed (debt_outstanding).")


class ErrorResponse(BaseModel):
    """Every error answer: `{"ok": false, "error": {...}}`."""

    ok: Literal[False] = False
    error: ErrorDetail
