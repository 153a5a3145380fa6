"""Console endpoints of batches: the list, a batch's tabs, its live progress (JSON for the page's
script) and its results export (CSV whose sums are the ledger's).

Every read names the signed-in user's tenant; another tenant's batch is the 404 of an unknown one.

No `from __future__ import annotations` in route modules: FastAPI must resolve the annotations of
endpoints defined inside the router factories.
"""

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from libs.vocabulary import fault_of
from services.gateway.adapters.video_store import video_store
from services.gateway.admin_ui import views
from services.gateway.api.ledger_exports import csv_download
from services.gateway.console import pages
from services.gateway.console.auth import CurrentUser
from services.gateway.console.dates import DayRange
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.params import CURSOR_PATTERN, MAX_CURSOR_CHARS, is_uuid
from services.gateway.schemas.batches import BatchView
from services.gateway.use_cases.console_reads import NotTheTenants, ResultRow
from services.gateway.use_cases.video_access import VideoAccessDecision, VideoAttempt
from services.gateway.use_cases.video_links import LinkRefused, VideoMode

TABS = (("overview", "Overview"), ("tasks", "Tasks"), ("ledger", "Ledger"), ("webhooks", "Webhooks"))
RESULT_COLUMNS = (
    "batch_index",
    "task_id",
    "status",
    "model",
    "failure_type",
    "fault",
    "error_message",
    "attempts",
    "credits_charged",
    "credits_refunded",
    "finished_at",
)

Cursor = Annotated[str, Query(max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN)]
Filter = Annotated[str, Query(max_length=64)]


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


async def _csv_rows(rows: AsyncIterator[ResultRow]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    async for row in rows:
        task = row.task
        writer.writerow(
            (
                task.batch_index,
                task.task_id,
                task.status,
                task.model,
                task.failure_type or "",
                row.fault,
                task.error_message or "",
                task.attempts,
                row.credits_charged,
                row.credits_refunded,
                task.finished_at.isoformat() if task.finished_at else "",
            )
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def batch_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """batches, batch, batch_progress, batch_results_csv, task_video."""
    reads = deps.reads
    store = video_store(deps.settings)
    videos = VideoAccessDecision(deps.settings, deps.backends, store)

    async def batches(
        request: Request,
        user: CurrentUser,
        status: Filter = "",
        created_from: Filter = "",
        created_to: Filter = "",
        cursor: Cursor = "",
    ) -> Response:
        days = DayRange.parse(created_from, created_to)
        filters = {
            "status": status if status in views.BATCH_STATUSES else "",
            **days.form_values("created_from", "created_to"),
        }
        items, next_cursor = await reads.batches(
            user.tenant_id,
            status=filters["status"],
            created_from=days.start,
            created_to=days.end,
            cursor=cursor,
        )
        return pages.render(
            request,
            "batches.html",
            user=user,
            active="batches",
            batches=items,
            filters=filters,
            status_options=views.options(views.BATCH_STATUSES, filters["status"], "any"),
            pages=views.pager(
                "/console/batches", filters, on_later_page=bool(cursor), next_cursor=next_cursor
            ),
        )

    async def batch(
        request: Request,
        user: CurrentUser,
        batch_id: str,
        tab: Filter = "overview",
        status: Filter = "",
        failure_type: Filter = "",
        cursor: Cursor = "",
    ) -> Response:
        if not is_uuid(batch_id):
            raise NotTheTenants(batch_id)
        batch_id = batch_id.lower()
        detail = await reads.batch(user.tenant_id, batch_id)
        tab = tab if tab in dict(TABS) else "overview"
        values: dict[str, Any] = {}
        if tab == "tasks":
            filters = {
                "tab": "tasks",
                "status": status if status in views.TASK_STATUSES else "",
                "failure_type": failure_type if failure_type in views.FAILURE_TYPES else "",
            }
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
        request: Request, user: CurrentUser, batch_id: str, task_id: str, mode: Filter = "play"
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

    async def batch_results_csv(request: Request, user: CurrentUser, batch_id: str) -> Response:
        if not is_uuid(batch_id):
            raise NotTheTenants(batch_id)
        batch_id = batch_id.lower()
        # Read before the 200 starts: another tenant's batch is a 404, not an empty file.
        await reads.batch_view(user.tenant_id, batch_id)
        rows = reads.results(user.tenant_id, batch_id)
        return csv_download(_csv_rows(rows), f"batch_{batch_id}_results.csv")

    return {
        "batches": batches,
        "batch": batch,
        "batch_progress": batch_progress,
        "batch_results_csv": batch_results_csv,
        "task_video": task_video,
    }
