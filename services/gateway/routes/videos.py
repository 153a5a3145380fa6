"""Generated video files, served from the asset directory.

Anyone who knows both ids can download a video: access control on assets (signed URLs or the
tenant's key) is a later issue.
"""

import asyncio
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from libs.config import Settings
from services.gateway.errors import ApiError
from services.gateway.routes.params import error_responses, is_uuid


def videos_router(settings: Settings) -> APIRouter:
    """GET /videos/{batch_id}/{task_id}.mp4 from `settings.asset_dir`."""
    router = APIRouter(tags=["videos"])
    asset_dir = FilePath(settings.asset_dir)

    @router.get(
        "/videos/{batch_id}/{task_id}.mp4",
        response_class=FileResponse,
        summary="Download a generated video",
        responses={200: {"content": {"video/mp4": {}}}, **error_responses(404)},
    )
    async def get_video(
        batch_id: Annotated[str, Path(description="Identifier of the batch (a UUID).")],
        task_id: Annotated[str, Path(description="Identifier of the task (a UUID).")],
    ) -> FileResponse:
        # Only UUID-shaped parts reach the file system, so no path can escape the asset directory.
        if not (is_uuid(batch_id) and is_uuid(task_id)):
            raise ApiError(404, "not_found", "video not found")
        video = asset_dir / batch_id.lower() / f"{task_id.lower()}.mp4"
        if not await asyncio.to_thread(video.is_file):
            raise ApiError(404, "not_found", "video not found")
        return FileResponse(video, media_type="video/mp4")

    return router
