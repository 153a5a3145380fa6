"""A batch's results and errors files (JSONL, or CSV with `?format=csv`) and its videos as a zip."""

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.adapters.video_store import video_store
from services.gateway.http.auth import ApiKeyAuthenticator, tenant_dependency
from services.gateway.http.params import BatchIdPath, error_responses
from services.gateway.use_cases.batch_results import (
    ERRORS_STATUSES,
    RESULT_COLUMNS,
    RESULTS_STATUSES,
    ResultLines,
    csv_lines,
    jsonl,
    started,
    video_zip,
)

JSONL_MEDIA_TYPE = "application/jsonl"
FormatQuery = Annotated[Literal["jsonl", "csv"], Query(alias="format", description="jsonl (default) or csv.")]
_LINE_DESCRIPTION = (
    "One line per item in a terminal state, in batch order: "
    + ", ".join(f"`{column}`" for column in RESULT_COLUMNS)
    + ". `video_url` is this API's link (send your key; it redirects to a fresh signed URL). "
    "`credits_charged` and `credits_refunded` sum to the batch's captured and refunded credits. "
    "The file grows while the batch runs and is complete once the batch finished "
    "(`batch.completed` announces it)."
)
_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {JSONL_MEDIA_TYPE: {}, "text/csv": {}},
        "description": "The file, streamed.",
    },
    **error_responses(404, 422, 429),
}


def result_lines(settings: Settings, backends: Backends) -> ResultLines:
    """The results use case as the settings configure it (public links, video retention)."""
    retention = timedelta(days=settings.video_retention_days) if settings.video_retention_days else None
    return ResultLines(
        backends.batch,
        base_url=settings.public_base_url.rstrip("/"),
        retention=retention,
        deadline_seconds=settings.grpc_deadline_seconds,
    )


async def file_response(
    lines: ResultLines, tenant_id: str, batch_id: str, statuses: Sequence[str], format_: str, name: str
) -> StreamingResponse:
    """A batch's results or errors file (`statuses` picks which) streamed as JSONL or CSV; the
    first page is read before the 200 starts, so an unknown batch is refused, not an empty file."""
    pages = await started(lines.pages(tenant_id, batch_id, statuses))
    render: Callable[[AsyncIterator[list[dict[str, Any]]]], AsyncIterator[bytes]]
    if format_ == "csv":
        render, media_type, suffix = csv_lines, "text/csv; charset=utf-8", "csv"
    else:
        render, media_type, suffix = jsonl, JSONL_MEDIA_TYPE, "jsonl"
    return StreamingResponse(
        render(pages),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}-{batch_id}.{suffix}"'},
    )


def results_router(settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator) -> APIRouter:
    """The results and errors files of a batch, and the zip of its videos."""
    router = APIRouter(prefix="/api/enterprise", tags=["customer"], responses=error_responses(401, 500, 503))
    authenticated = Depends(tenant_dependency(authenticator))
    lines = result_lines(settings, backends)
    store = video_store(settings)

    def line_file_route(name: str, statuses: Sequence[str], summary: str, description: str) -> None:
        # GET .../{name} (`get_batch_{name}`): the batch's items in `statuses`, as JSONL or CSV.
        @router.get(
            f"/video-batch/{{batch_id}}/{name}",
            summary=summary,
            description=description,
            response_class=StreamingResponse,
            responses=_FILE_RESPONSES,
            name=f"get_batch_{name}",
        )
        async def get_line_file(
            tenant_id: Annotated[str, authenticated], batch_id: BatchIdPath, format_: FormatQuery = "jsonl"
        ) -> StreamingResponse:
            return await file_response(lines, tenant_id, batch_id, statuses, format_, name)

    line_file_route(
        "results",
        RESULTS_STATUSES,
        "The batch's results file: its succeeded items (JSONL, or CSV)",
        _LINE_DESCRIPTION,
    )
    line_file_route(
        "errors",
        ERRORS_STATUSES,
        "The batch's errors file: its failed and cancelled items (JSONL, or CSV)",
        _LINE_DESCRIPTION
        + " `failure_type`, `fault` (provider, customer_input, us or cancelled) and `reason` say why.",
    )

    @router.get(
        "/video-batch/{batch_id}/videos.zip",
        summary="Every video of the batch so far as one zip, with a manifest",
        description=(
            "A streamed zip: `videos/<batch_index>[-<custom_id>].mp4` per succeeded item, then "
            "`manifest.jsonl` (each results line with the `file` it is in)."
        ),
        response_class=StreamingResponse,
        responses={
            200: {"content": {"application/zip": {}}, "description": "The zip, streamed."},
            **error_responses(404, 422, 429),
        },
    )
    async def get_batch_videos_zip(
        tenant_id: Annotated[str, authenticated], batch_id: BatchIdPath
    ) -> StreamingResponse:
        pages = await started(lines.pages(tenant_id, batch_id, RESULTS_STATUSES))
        return StreamingResponse(
            video_zip(pages, store, batch_id),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="videos-{batch_id}.zip"'},
        )

    return router
