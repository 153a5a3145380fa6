"""Path and query parameters shared by the customer and admin routers."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Query

from services.gateway.errors import ApiError
from services.gateway.schemas import ErrorResponse

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_CURSOR_CHARS = 1024

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, 1..{MAX_PAGE_SIZE}.")]
PageCursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="`next_cursor` of the previous page; omit for the first."),
]


def is_uuid(value: str) -> bool:
    """True when `value` is a hyphenated UUID (the only shape our ids have)."""
    return _UUID.fullmatch(value) is not None


async def batch_id_path(
    batch_id: Annotated[str, Path(description="Identifier of the batch (a UUID).")],
) -> str:
    """The batch id of the path, lower-cased; a malformed one is simply not found."""
    # async although it awaits nothing: FastAPI runs a sync dependency in a worker thread.
    if not is_uuid(batch_id):
        # 404, not 422: the shape of ids is nobody's business, and nothing exists there anyway.
        raise ApiError(404, "not_found", "batch not found")
    return batch_id.lower()


BatchIdPath = Annotated[str, Depends(batch_id_path)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` documenting the JSON error body for each status."""
    descriptions = {
        401: "Missing or invalid credentials (`unauthorized`).",
        402: "Not enough credits (`insufficient_credits`, with `required_credits` and `available_credits`).",
        403: "Authenticated but not allowed (`forbidden`), or a video link expired or tampered with.",
        404: "No such resource, or not yours (`not_found`).",
        409: "Conflict, e.g. the X-Request-ID was used with another body (`idempotency_key_reused`).",
        413: "Request body too large (`payload_too_large`).",
        422: "Invalid input (`validation_error`, with `errors`: [{field, message}]).",
        429: "Too many requests (`rate_limited`, with Retry-After).",
        500: "Unexpected failure (`internal`); no details are disclosed.",
        503: "A backend is unavailable (`unavailable`, with Retry-After).",
    }
    return {status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses}
