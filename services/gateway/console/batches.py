"""Console endpoints of batches: the list, a batch's tabs, its live progress (JSON for the page's
script) and its results and errors files (the API's, JSONL or CSV: the one results use case).

Every read names the signed-in user's tenant; another tenant's batch is the 404 of an unknown one.
"""

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from reelbatch.proto.batch.v1 import batch_pb2

from libs.vocabulary import fault_of
from services.gateway.adapters.video_store import video_store
from services.gateway.admin_ui import views
from services.gateway.admin_ui.filters import BatchTabFilters
from services.gateway.api.results import file_response, result_lines
from services.gateway.console import pages
from services.gateway.console.auth import CurrentUser
from services.gateway.console.dates import DayRange
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.params import CursorText, FilterText, is_uuid, metadata_filter
from services.gateway.schemas.batches import BatchView
from services.gateway.use_cases.batch_results import ERRORS_STATUSES, RESULTS_STATUSES
from services.gateway.use_cases.console_reads import NotTheTenants
from services.gateway.use_cases.video_access import VideoAccessDecision, VideoAttempt
from services.gateway.use_cases.video_links import LinkRefused, VideoMode

# The batch name and metadata filters, bounded as the batch service bounds them.
NameText = Annotated[str, Query(max_length=batch_pb2.CREATE_BATCH_LIMIT_MAX_NAME_CHARS)]
MetadataText = Annotated[str, Query(max_length=batch_pb2.CREATE_BATCH_LIMIT_MAX_METADATA_VALUE_CHARS)]
TABS = (("overview", "Overview"), ("tasks", "Tasks"), ("ledger", "Ledger"), ("webhooks", "Webhooks"))


def progress_fields(batch: BatchView) -> dict[str, object]:
    """What the page's script updates: the batch's figures, net, and the bar's segments."""
    bar = views.progress(batch)
    return {
        **batch.model_dump(mode="json"),
        "net_spent": batch.frozen_credits - batch.refunded_credits,
        "done": bar.done,
        "segments": [{"kind": segment.kind, "width": segment.width} for segment in bar.segments],
        "live": views.is_live(batch),
    }


def _tabs(batch_id: str, active: str) -> list[views.Link]:
    return [
        views.Link(f"/console/batches/{batch_id}?tab={key}", label, key == active, key) for key, label in TABS
    ]


def batch_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """batches, batch, batch_progress, the results and errors files, task_video."""
    reads = deps.reads
    lines = result_lines(deps.settings, deps.backends)
    store = video_store(deps.settings)
    videos = VideoAccessDecision(deps.settings, deps.backends, store)

    async def batches(
        request: Request,
        user: CurrentUser,
        status: FilterText = "",
        created_from: FilterText = "",
        created_to: FilterText = "",
        name: NameText = "",
        meta_key: MetadataText = "",
        meta_value: MetadataText = "",
        cursor: CursorText = "",
    ) -> Response:
        days = DayRange.parse(created_from, created_to)
        # `metadata[key]=value` pairs as the API's list takes them, and the form's one pair.
        metadata = metadata_filter(request.query_params.multi_items())
        if meta_key:
            metadata[meta_key] = meta_value
        filters = {
            "status": status if status in views.BATCH_STATUSES else "",
            **days.form_values("created_from", "created_to"),
            "name": name,
            **{f"metadata[{key}]": value for key, value in metadata.items()},
        }
        items, next_cursor = await reads.batches(
            user.tenant_id,
            status=filters["status"],
            created_from=days.start,
            created_to=days.end,
            name=name,
            metadata=metadata,
            cursor=cursor,
        )
        return pages.render(
            request,
            "batches.html",
            user=user,
            active="batches",
            batches=items,
            filters=filters,
            metadata=metadata,
            name_max=batch_pb2.CREATE_BATCH_LIMIT_MAX_NAME_CHARS,
            status_options=views.options(views.BATCH_STATUSES, filters["status"], "any"),
            pages=views.pager(
                "/console/batches", filters, on_later_page=bool(cursor), next_cursor=next_cursor
            ),
        )

    async def batch(request: Request, user: CurrentUser, batch_id: str, query: BatchTabFilters) -> Response:
        if not is_uuid(batch_id):
            raise NotTheTenants(batch_id)
        batch_id = batch_id.lower()
        detail = await reads.batch(user.tenant_id, batch_id)
        tab, cursor = (query.tab if query.tab in dict(TABS) else "overview"), query.cursor
        values: dict[str, Any] = {}
        if tab == "tasks":
            filters = {"tab": "tasks", "status": query.status, "failure_type": query.failure_type}
            tasks = await reads.tasks(
                user.tenant_id,
                batch_id,
                status=filters["status"],
                failure_type=filters["failure_type"],
                cursor=cursor,
            )
            base = f"/console/batches/{batch_id}"
            values = {
                "tasks": tasks.items,
                "fault_of": {
                    failure_type: views.FAULT_LABELS[fault_of(failure_type)]
                    for failure_type in views.FAILURE_TYPES
                },
                "base": base,
                "status_options": views.options(views.TASK_STATUSES, filters["status"], "any"),
                "failure_type_options": views.options(views.FAILURE_TYPES, filters["failure_type"], "any"),
                "pages": views.pager(
                    base, filters, on_later_page=bool(cursor), next_cursor=tasks.next_cursor
                ),
            }
        elif tab == "ledger":
            ledger = await reads.ledger(user.tenant_id, batch_id, cursor=cursor)
            values = {
                "ledger": ledger,
                "pages": views.pager(
                    f"/console/batches/{batch_id}",
                    {"tab": "ledger"},
                    on_later_page=bool(cursor),
                    next_cursor=ledger.next_cursor,
                    next_label="More entries →",
                ),
            }
        elif tab == "webhooks":
            values = {"deliveries": await reads.webhooks(user.tenant_id, batch_id, cursor=cursor)}
        else:
            values = {"fault_groups": views.failures_by_fault(detail.failures)}
        return pages.render(
            request,
            f"batch/{tab}.html",
            user=user,
            active="batches",
            batch=detail,
            live_batch=views.is_live(detail),
            active_tab=tab,
            tabs=_tabs(batch_id, tab),
            **values,
        )

    async def batch_progress(request: Request, user: CurrentUser, batch_id: str) -> Response:
        if not is_uuid(batch_id):
            raise NotTheTenants(batch_id)
        view = await reads.batch_view(user.tenant_id, batch_id.lower())
        return JSONResponse(progress_fields(view), headers={"Cache-Control": "no-store"})

    async def task_video(
        request: Request, user: CurrentUser, batch_id: str, task_id: str, mode: FilterText = "play"
    ) -> Response:
        if not (is_uuid(batch_id) and is_uuid(task_id)):
            raise NotTheTenants(batch_id)
        batch_id, task_id = batch_id.lower(), task_id.lower()
        video_mode = VideoMode.DOWNLOAD if mode == VideoMode.DOWNLOAD.value else VideoMode.PLAY
        attempt = VideoAttempt(
            user.tenant_id, f"console:{user.user_id}", batch_id, task_id, video_mode.value, via="console"
        )
        try:
            async with videos.recorded(request, attempt):
                # The batch is the tenant's (its files are under its id), and the file is there.
                try:
                    await reads.batch_view(user.tenant_id, batch_id)
                except NotTheTenants:
                    raise LinkRefused("not_found", "video not found") from None
                if not await store.exists(batch_id, task_id):
                    raise LinkRefused("not_found", "video not found")
        except LinkRefused:
            raise NotTheTenants(batch_id) from None
        disposition = "attachment" if video_mode == VideoMode.DOWNLOAD else "inline"
        headers = {
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        }
        return store.response(batch_id, task_id, disposition=disposition, headers=headers)

    def file_download(statuses: tuple[str, ...], format_: str, name: str) -> Endpoint:
        async def download(request: Request, user: CurrentUser, batch_id: str) -> Response:
            if not is_uuid(batch_id):
                raise NotTheTenants(batch_id)
            batch_id = batch_id.lower()
            # Read with the tenant first: another tenant's batch is a 404, not an empty file.
            await reads.batch_view(user.tenant_id, batch_id)
            response = await file_response(lines, user.tenant_id, batch_id, statuses, format_, name)
            response.headers["Cache-Control"] = "private, no-store"
            return response

        return download

    return {
        "batches": batches,
        "batch": batch,
        "batch_progress": batch_progress,
        # The API's results and errors files (one use case), through the console's session.
        "batch_results_csv": file_download(RESULTS_STATUSES, "csv", "results"),
        "batch_results_jsonl": file_download(RESULTS_STATUSES, "jsonl", "results"),
        "batch_errors_csv": file_download(ERRORS_STATUSES, "csv", "errors"),
        "batch_errors_jsonl": file_download(ERRORS_STATUSES, "jsonl", "errors"),
        "task_video": task_video,
    }
