"""Generated videos: one access decision for play, download and embed, and its audit log.

A customer asks for a link with its API key (`GET /api/enterprise/video-batch/{id}/tasks/{task}/video`)
and receives a short-lived signed URL; the signed URL (`/videos/{batch}/{task}.mp4?...&sig=`) serves
the file inline (play, embed) or as an attachment (download). Both go through `VideoAccessDecision`
(`use_cases/video_access.py`: owner tenant, key not revoked, file present; plus signature and
expiry for links), and every attempt, allowed or not, is written to billing's video access log,
which admins read at `GET /api/admin/video-access`. An unsigned, tampered or expired link is 403.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.adapters.video_store import video_store
from services.gateway.http.auth import (
    AdminAuthenticator,
    ApiCaller,
    ApiKeyAuthenticator,
    admin_dependency,
    caller_dependency,
)
from services.gateway.http.errors import ApiError
from services.gateway.http.params import (
    UUID_PATTERN,
    BatchIdPath,
    PageQuery,
    documented,
    error_responses,
)
from services.gateway.schemas.access import VideoAccessPage, VideoAccessView, VideoLink
from services.gateway.use_cases.video_access import VideoAccessDecision, VideoAttempt
from services.gateway.use_cases.video_links import LinkRefused, VideoMode, video_links

log = logging.getLogger(__name__)

TaskIdPath = Annotated[str, Path(description="Identifier of the task (a UUID).")]
ModeQuery = Annotated[
    VideoMode, Query(description="play or embed (served inline), download (as an attachment).")
]


def _refusal(refused: LinkRefused) -> ApiError:
    if refused.reason == "not_found":
        return ApiError(404, "not_found", refused.message)
    if refused.reason == "video_expired":
        return ApiError(410, "video_expired", refused.message)
    return ApiError(403, "forbidden", refused.message, extra={"reason": refused.reason})


def videos_router(
    settings: Settings,
    backends: Backends,
    authenticator: ApiKeyAuthenticator,
    admin_auth: AdminAuthenticator,
) -> APIRouter:
    """The link endpoint (API key), the signed video files, and the admin access log."""
    router = APIRouter(tags=["videos"])
    links = video_links(settings)
    store = video_store(settings)
    decision = VideoAccessDecision(settings, backends, store)
    base_url = settings.public_base_url.rstrip("/")
    customer = Depends(caller_dependency(authenticator))
    admin = Depends(admin_dependency(admin_auth))
    deadline = settings.grpc_deadline_seconds

    @router.get(
        "/api/enterprise/video-batch/{batch_id}/tasks/{task_id}/video",
        response_model=VideoLink,
        summary="A short-lived signed link to play, download or embed a video",
        description=(
            "This path is the long-lived link of a video (results files and webhooks carry it): "
            "with `redirect=true` it answers 307 to a freshly signed URL. A video is kept "
            "REELBATCH_VIDEO_RETENTION_DAYS days (default 30) after its batch finished, then 410."
        ),
        responses={
            307: {"description": "redirect=true: to the signed URL."},
            **error_responses(401, 404, 410, 422, 429, 503),
        },
    )
    async def get_video_link(
        request: Request,
        caller: Annotated[ApiCaller, customer],
        batch_id: BatchIdPath,
        task_id: TaskIdPath,
        mode: ModeQuery = VideoMode.DOWNLOAD,
        redirect: Annotated[
            bool, Query(description="Answer 307 to the signed URL instead of describing it.")
        ] = False,
    ) -> Response:
        task_id = task_id.lower()
        attempt = VideoAttempt(caller.tenant_id, caller.key_id, batch_id, task_id, mode.value, via="api")
        try:
            async with decision.recorded(request, attempt):
                await decision.decide(caller.tenant_id, caller.key_id, batch_id, task_id)
        except LinkRefused as refused:
            raise _refusal(refused) from None
        grant = links.grant(batch_id, task_id, mode, caller.tenant_id, caller.key_id)
        url = base_url + links.signed_path(grant)
        if redirect:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})
        link = VideoLink(url=url, mode=mode.value, expires_at=datetime.fromtimestamp(grant.expires_at, UTC))
        return Response(link.model_dump_json(), media_type="application/json")

    @router.get(
        "/videos/{batch_id}/{task_id}.mp4",
        response_class=Response,
        summary="A video, through a signed link (no credentials; the link expires)",
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The video (local storage)."},
            307: {"description": "Redirect to a short-lived presigned URL of the video (S3 storage)."},
            **error_responses(403, 404, 503),
        },
    )
    async def get_video(
        request: Request,
        batch_id: Annotated[str, Path(description="Identifier of the batch (a UUID).")],
        task_id: TaskIdPath,
        mode: Annotated[str | None, Query(max_length=20, description="play, download or embed.")] = None,
        tenant: Annotated[str | None, Query(max_length=100, description="Set by the signer.")] = None,
        key: Annotated[str | None, Query(max_length=100, description="Set by the signer.")] = None,
        exp: Annotated[str | None, Query(max_length=20, description="Expiry (Unix seconds).")] = None,
        sig: Annotated[str | None, Query(max_length=128, description="HMAC-SHA256 signature.")] = None,
    ) -> Response:
        presented = {
            "mode": mode or "",
            "tenant": tenant or "",
            "key": key or "",
            "exp": exp or "",
            "sig": sig or "",
        }
        attempt = VideoAttempt(
            presented["tenant"], presented["key"], batch_id, task_id, presented["mode"], via="signed_url"
        )
        try:
            async with decision.recorded(request, attempt):
                grant = links.verify(batch_id, task_id, presented)
                await decision.decide(grant.tenant_id, grant.key_id, grant.batch_id, grant.task_id)
        except LinkRefused as refused:
            raise _refusal(refused) from None
        disposition = "attachment" if grant.mode == VideoMode.DOWNLOAD else "inline"
        headers = {
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if grant.mode != VideoMode.EMBED:
            headers["X-Frame-Options"] = "DENY"
        return store.response(
            grant.batch_id.lower(), grant.task_id.lower(), disposition=disposition, headers=headers
        )

    @router.get(
        "/api/admin/video-access",
        **documented(
            VideoAccessPage,
            "The video access audit log: every play, download and embed attempt, newest first",
            401,
            403,
            422,
            429,
            503,
            tags=["admin"],
        ),
    )
    async def list_video_access(
        _: Annotated[object, admin],
        page: PageQuery,
        tenant_id: Annotated[
            str | None, Query(pattern=UUID_PATTERN, description="Only links issued to this tenant.")
        ] = None,
        batch_id: Annotated[str | None, Query(pattern=UUID_PATTERN, description="Only this batch.")] = None,
    ) -> VideoAccessPage:
        access = await backends.billing.ListVideoAccess(
            billing_pb2.ListVideoAccessRequest(
                tenant_id=(tenant_id or "").lower(),
                batch_id=(batch_id or "").lower(),
                cursor=page.cursor,
                limit=page.limit,
            ),
            timeout=deadline,
        )
        return VideoAccessPage.of(
            [VideoAccessView.from_proto(entry) for entry in access.entries], access.next_cursor
        )

    return router
