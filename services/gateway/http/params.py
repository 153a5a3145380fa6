"""Path and query parameters shared by the customer and admin routers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from pydantic import BaseModel

from services.gateway.http.errors import ApiError
from services.gateway.schemas.errors import ErrorResponse

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_CURSOR_CHARS = 1024

# Our cursors are URL-safe base64 or digits: printable ASCII. Their content is the backends' to
# judge (each refuses a position it cannot hold); the edge only bounds their shape.
CURSOR_PATTERN = r"^[\x21-\x7e]*$"
# A calendar month: the backends judge which months they hold (billing: 1970-01..9999-11).
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, 1..{MAX_PAGE_SIZE}.")]
PageCursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page; omit for the first.",
    ),
]


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which page a list route was asked for: the cursor ("" for the first page) and its size."""

    cursor: str
    limit: int


async def page_request(cursor: PageCursor = None, limit: PageLimit = DEFAULT_PAGE_SIZE) -> PageRequest:
    """The `cursor` and `limit` query parameters of a paged list route."""
    # async although it awaits nothing: FastAPI runs a sync dependency in a worker thread.
    return PageRequest(cursor=cursor or "", limit=limit)


# The paged-list parameters of the cold list routes, declared last in a route's signature so that
# /openapi.json lists them after the route's own. The benchmarked batch and task reads keep
# `PageCursor`/`PageLimit` in their own signature: one dependency fewer to solve per request.
PageQuery = Annotated[PageRequest, Depends(page_request)]
# The HTML pages' query values: a page's cursor, and a filter ("" when absent; an unknown value
# is ignored by the page rather than refused).
CursorText = Annotated[str, Query(max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN)]
FilterText = Annotated[str, Query(max_length=64)]
MonthQuery = Annotated[str, Query(pattern=MONTH_PATTERN, description="A calendar month in UTC, `YYYY-MM`.")]


def metadata_filter(query: list[tuple[str, str]]) -> dict[str, str]:
    """The `metadata[key]=value` pairs of a query string (the batch lists' metadata filter)."""
    return {
        key[len("metadata[") : -1]: value
        for key, value in query
        if key.startswith("metadata[") and key.endswith("]")
    }


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
TenantIdPath = Annotated[str, Path(min_length=1, max_length=64, description="Identifier of the tenant.")]


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` documenting the JSON error body for each status."""
    descriptions = {
        401: "Missing or invalid credentials (`unauthorized`).",
        402: (
            "Not enough credits (`insufficient_credits`, with `required_credits` and `available_credits`), "
            "or a monthly budget would be exceeded (`budget_exceeded`, with `required_credits`, "
            "`remaining_credits` and `period_end`), or the account owes credits of a refunded or "
            "disputed payment (`debt_outstanding`, with `debt_credits`)."
        ),
        403: (
            "Authenticated but not allowed (`forbidden`; `insufficient_scope` for an API key without "
            "the scope the request needs), or a video link expired or tampered with."
        ),
        404: "No such resource, or not yours (`not_found`).",
        409: (
            "Conflict, e.g. the idempotency key was used with another body (`idempotency_key_reused`, "
            "with the `batch_id` holding it), or a quote used already (`quote_used`) or cited with "
            "another body (`quote_mismatch`)."
        ),
        410: (
            "Gone: the video's retention period is over (`video_expired`), or the quote expired "
            "(`quote_expired`)."
        ),
        413: "Request body too large (`payload_too_large`).",
        415: "Content-Type or Content-Encoding not supported (`unsupported_media_type`).",
        422: "Invalid input (`validation_error`, with `errors`: [{field, message}]).",
        429: "Too many requests (`rate_limited`, with Retry-After).",
        500: "Unexpected failure (`internal`); no details are disclosed.",
        503: "A backend is unavailable (`unavailable`, with Retry-After).",
    }
    return {status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses}


def documented(model: type[BaseModel], summary: str, *error_statuses: int, **more: Any) -> dict[str, Any]:
    """What a route declares for /openapi.json: the model it answers, its summary, its error answers
    (`error_responses` of `error_statuses`) and any other route option given (`status_code`...)."""
    declared: dict[str, Any] = {"response_model": model, "summary": summary, **more}
    if error_statuses:
        declared["responses"] = error_responses(*error_statuses)
    return declared
