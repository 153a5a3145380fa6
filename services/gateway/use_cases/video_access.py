"""Who may have a video: one access decision for play, download and embed, and its audit log.

Both ways to a video (the link endpoint, with an API key, and the signed URL) ask the same
decision (owner tenant, key not revoked, file present) and record every attempt, allowed or not,
in billing's video access log.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from fastapi import Request
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.adapters.video_store import VideoStore
from services.gateway.http.params import is_uuid
from services.gateway.http.rate_limits import client_address
from services.gateway.use_cases.video_links import LinkRefused

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

# The audit log's result of an access that was let through.
ALLOWED = "allowed"


@dataclass(frozen=True, slots=True)
class VideoAttempt:
    """What the audit log keeps of an attempt at a video, as presented (a forged link included)."""

    tenant_id: str
    key_id: str
    batch_id: str
    task_id: str
    mode: str
    via: str = field(kw_only=True)  # api (the link endpoint) or signed_url


class VideoAccessDecision:
    """Decides every video access the same way, and records each attempt in the audit log."""

    def __init__(self, settings: Settings, backends: Backends, store: VideoStore) -> None:
        self._store = store
        self._backends = backends
        self._deadline = settings.grpc_deadline_seconds
        # Videos are served this long after their batch finished (None: for ever).
        days = settings.video_retention_days
        self._retention = timedelta(days=days) if days else None

    async def decide(self, tenant_id: str, key_id: str, batch_id: str, task_id: str) -> None:
        """Returns if allowed; LinkRefused when the key is revoked, the batch not the tenant's, or no file."""
        if not (is_uuid(batch_id) and is_uuid(task_id) and is_uuid(tenant_id) and is_uuid(key_id)):
            raise LinkRefused("not_found", "video not found")
        key_revoked = LinkRefused("key_revoked", "the API key of this link is no longer valid")
        with _unknown_as(key_revoked):
            key = await self._backends.billing.GetApiKey(
                billing_pb2.GetApiKeyRequest(tenant_id=tenant_id, key_id=key_id), timeout=self._deadline
            )
        if key.HasField("revoked_at"):
            raise key_revoked
        with _unknown_as(LinkRefused("not_found", "video not found")):
            batch = await self._backends.batch.GetBatch(
                batch_pb2.GetBatchRequest(tenant_id=tenant_id, batch_id=batch_id), timeout=self._deadline
            )
        if self._retention is not None and batch.HasField("finished_at"):
            kept_until = batch.finished_at.ToDatetime(tzinfo=UTC) + self._retention
            if datetime.now(UTC) >= kept_until:
                raise LinkRefused("video_expired", "this video was deleted: its retention period is over")
        # Only UUID-shaped parts reach the store, so no path can escape the asset directory.
        if not await self._store.exists(batch_id.lower(), task_id.lower()):
            raise LinkRefused("not_found", "video not found")

    @asynccontextmanager
    async def recorded(self, request: Request, attempt: VideoAttempt) -> AsyncIterator[None]:
        """Records the attempt made in the block once it ends: `allowed` when it returns, the
        refusal's reason on LinkRefused (raised on), `error` on anything else (a backend down is
        never recorded as allowed)."""
        result = "error"
        try:
            yield
            result = ALLOWED
        except LinkRefused as refused:
            result = refused.reason
            raise
        finally:
            await self.record(request, attempt, result)

    async def record(self, request: Request, attempt: VideoAttempt, result: str) -> None:
        """Writes one attempt to the audit log (fields bounded: a forged link may carry anything)."""
        occurred_at = billing_pb2.VideoAccess().occurred_at
        occurred_at.FromDatetime(datetime.now(UTC))
        await self._backends.billing.RecordVideoAccess(
            billing_pb2.VideoAccess(
                tenant_id=_audit_text(attempt.tenant_id, 100),
                key_id=_audit_text(attempt.key_id, 100),
                client_address=_audit_text(client_address(request.scope.get("client")), 100),
                batch_id=_audit_text(attempt.batch_id, 100),
                task_id=_audit_text(attempt.task_id, 100),
                mode=_audit_text(attempt.mode, 20),
                via=attempt.via,
                result=result,
                occurred_at=occurred_at,
            ),
            timeout=self._deadline,
        )


def _audit_text(value: str, limit: int) -> str:
    """`value` as the audit log keeps it: at most `limit` printable ASCII characters, anything else
    as `?` (a forged link may carry NUL, which PostgreSQL text cannot hold, or lone surrogates)."""
    return _UNPRINTABLE.sub("?", value[:limit])


@contextmanager
def _unknown_as(refusal: LinkRefused) -> Iterator[None]:
    """A backend's NOT_FOUND or INVALID_ARGUMENT in the block is `refusal`; other errors propagate."""
    try:
        yield
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise refusal from None
        raise
