"""The two reads clients poll, a batch and a page of its tasks, answered as JSON bytes.

Used by the FastAPI routes (services/gateway/api/customer.py), which document them: one backend call
and the view's fields (`fields_of`) serialised once, without validating a model the backend's
message already satisfies.
"""

from __future__ import annotations

from typing import Any

from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiCaller
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.fields import json_bytes
from services.gateway.schemas.tasks import TaskView
from services.gateway.use_cases.video_links import VideoMode, video_links


class BatchReads:
    """GET a batch and GET a page of its tasks, for an authenticated caller."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self._batch = backends.batch
        self._deadline = settings.grpc_deadline_seconds
        self._links = video_links(settings)
        self._base_url = settings.public_base_url.rstrip("/")

    async def batch(self, tenant_id: str, batch_id: str) -> bytes:
        """The batch's view (`BatchView`) as JSON; gRPC refusals propagate (404 for another tenant's)."""
        batch = await self._batch.GetBatch(
            batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id), timeout=self._deadline
        )
        return json_bytes(BatchView.fields_of(batch))

    async def task_page(
        self, caller: ApiCaller, batch_id: str, *, status: str, cursor: str, limit: int
    ) -> bytes:
        """A page of the batch's tasks (`TaskPage`) as JSON, each video URL a short-lived link
        signed for the caller's key."""
        response = await self._batch.ListTasks(
            batch_pb2.ListTasksRequest(
                tenant_id=caller.tenant_id, batch_id=batch_id, status=status, cursor=cursor, limit=limit
            ),
            timeout=self._deadline,
        )
        tasks = [TaskView.fields_of(task) for task in response.tasks]
        self._sign_video_urls(tasks, batch_id, caller)
        return json_bytes({"items": tasks, "next_cursor": response.next_cursor or None})

    def _sign_video_urls(self, tasks: list[dict[str, Any]], batch_id: str, caller: ApiCaller) -> None:
        done = [task for task in tasks if task["video_url"] is not None]
        paths = self._links.signed_paths(
            batch_id, [task["task_id"] for task in done], VideoMode.DOWNLOAD, caller.tenant_id, caller.key_id
        )
        for task, path in zip(done, paths, strict=True):
            task["video_url"] = self._base_url + path
