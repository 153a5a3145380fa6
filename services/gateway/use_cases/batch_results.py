"""A batch's results and errors files, and its videos as one zip, streamed page by page.

Results hold the succeeded items, errors the failed and cancelled ones: one line per item in a
terminal state, in batch order, so a file read while the batch runs grows and is complete once
the batch finished. Lines are written a page of tasks at a time (a thousand), so a 10,000-item
file never exists whole in the gateway. Each line's `video_url` is the API's long-lived link
(answered with a redirect to a fresh signed URL), not a signed URL that would expire in the file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import orjson
from reelbatch.proto.batch.v1 import batch_pb2, batch_pb2_grpc

from libs.ledger_keys import task_transfer_id
from libs.rpc.timestamps import optional_time
from libs.vocabulary import fault_of
from services.gateway.adapters.video_store import VideoStore
from services.gateway.schemas.fields import json_bytes

RESULTS_STATUSES = ("succeeded",)
ERRORS_STATUSES = ("failed", "cancelled")
# The columns of a line, in order (CSV header and JSONL keys alike).
RESULT_COLUMNS = (
    "custom_id",
    "batch_index",
    "task_id",
    "status",
    "model",
    "failure_type",
    "fault",
    "reason",
    "attempts",
    "credits_charged",
    "credits_refunded",
    "video_url",
    "video_expires_at",
    "finished_at",
    "metadata",
    "ledger_transfer_id",
    "ledger_ref_type",
)
# Tasks per ListTasks call: the batch service's largest page.
RESULTS_PAGE_SIZE = 1000
# The zip's manifest: one line per item of the results file, with the name of its video.
MANIFEST_NAME = "manifest.jsonl"


def video_link(base_url: str, batch_id: str, task_id: str) -> str:
    """The long-lived API link of a video: with the caller's key it redirects to a signed URL."""
    return f"{base_url}/api/enterprise/video-batch/{batch_id}/tasks/{task_id}/video?redirect=true"


class ResultLines:
    """The lines of one batch's results or errors file, as dictionaries in RESULT_COLUMNS order."""

    def __init__(
        self,
        batch: batch_pb2_grpc.BatchServiceAsyncStub,
        *,
        base_url: str,
        retention: timedelta | None,
        deadline_seconds: float,
    ) -> None:
        self._batch = batch
        self._base_url = base_url
        self._retention = retention
        self._deadline = deadline_seconds

    async def pages(
        self, tenant_id: str, batch_id: str, statuses: Sequence[str]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of lines in batch order. The first page is asked for before anything is
        answered: call `started` on the result so that an unknown batch is a 404, not a 200."""
        cursor = ""
        while True:
            page = await self._batch.ListTasks(
                batch_pb2.ListTasksRequest(
                    tenant_id=tenant_id,
                    batch_id=batch_id,
                    statuses=list(statuses),
                    cursor=cursor,
                    limit=RESULTS_PAGE_SIZE,
                ),
                timeout=self._deadline,
            )
            yield [self.line(task) for task in page.tasks]
            cursor = page.next_cursor
            if not cursor:
                return

    def line(self, task: batch_pb2.Task) -> dict[str, Any]:
        """One item's line: its ids, outcome, money and video link."""
        succeeded = task.status == "succeeded"
        finished_at = optional_time(task.finished_at, task.HasField("finished_at"))
        expires_at = (
            finished_at + self._retention
            if succeeded and finished_at is not None and self._retention is not None
            else None
        )
        failure_type = task.failure_type or None
        return {
            "custom_id": task.custom_id or None,
            "batch_index": task.batch_index,
            "task_id": task.task_id,
            "status": task.status,
            "model": task.model,
            "failure_type": failure_type,
            "fault": fault_of(failure_type) if failure_type else None,
            "reason": task.error_message or None,
            "attempts": task.attempts,
            # Each item's price is captured when it succeeds and refunded otherwise (never both).
            "credits_charged": task.unit_price if succeeded else 0,
            "credits_refunded": 0 if succeeded else task.unit_price,
            "video_url": video_link(self._base_url, task.batch_id, task.task_id) if succeeded else None,
            "video_expires_at": expires_at,
            "finished_at": finished_at,
            "metadata": dict(task.metadata),
            # The item's receipt: its capture or refund in the ledger, whose id is derived from the
            # task id (ADR-104), so the line names it without asking billing.
            "ledger_transfer_id": task_transfer_id(task.task_id),
            "ledger_ref_type": "batch_capture" if succeeded else "batch_refund",
        }


async def started(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[list[dict[str, Any]]]:
    """`pages` with the first one already fetched, so a refusal is answered before the 200 starts."""
    first = await anext(pages)

    async def replay() -> AsyncIterator[list[dict[str, Any]]]:
        yield first
        async for page in pages:
            yield page

    return replay()


async def jsonl(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """JSON Lines, a page per chunk."""
    async for page in pages:
        if page:
            yield b"".join(json_bytes(line) + b"\n" for line in page)


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return orjson.dumps(value).decode() if value else ""
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        # A spreadsheet would run it as a formula (CSV injection): a leading quote keeps it text.
        return "'" + value
    return value


async def csv_lines(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """CSV with a header row, a page per chunk; metadata as a JSON object in one cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    async for page in pages:
        writer.writerows([_cell(line[column]) for column in RESULT_COLUMNS] for line in page)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


class _Spool(io.RawIOBase):
    """A write-only stream the zip writes into and the response drains: never seekable, so
    `zipfile` writes each member's sizes after its data (streaming mode)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        taken = b"".join(self._parts)
        self._parts.clear()
        return taken


def video_name(line: dict[str, Any]) -> str:
    """A video's file name in the zip: its position, and the custom_id when it is a safe name."""
    custom_id = line["custom_id"] or ""
    safe = custom_id if custom_id and all(c.isalnum() or c in "-_." for c in custom_id) else ""
    return f"videos/{line['batch_index']:05d}{'-' + safe if safe else ''}.mp4"


async def video_zip(
    pages: AsyncIterator[list[dict[str, Any]]], store: VideoStore, batch_id: str
) -> AsyncIterator[bytes]:
    """The batch's succeeded videos as one zip, written as it is sent, with `manifest.jsonl` last
    (each results line with its `file`). Videos are stored as they are (MP4 does not compress)."""
    spool = _Spool()
    manifest: list[bytes] = []
    with zipfile.ZipFile(spool, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        async for page in pages:
            for line in page:
                name = video_name(line)
                content = await store.read(batch_id, line["task_id"])
                if content is None:
                    line = {**line, "file": None}
                else:
                    await asyncio.to_thread(archive.writestr, name, content)
                    line = {**line, "file": name}
                manifest.append(json_bytes(line) + b"\n")
                yield spool.drain()
        archive.writestr(MANIFEST_NAME, b"".join(manifest))
    yield spool.drain()
