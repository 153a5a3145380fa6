"""Where the gateway finds a video once a link is honoured: the local asset directory or S3.

Local videos are streamed by the gateway. S3 videos are not: the gateway answers with a 307
redirect to a presigned S3 URL that lives `s3_presign_seconds` (ADR-022), so video bytes and
Range requests go straight to S3 and the gateway never holds an upload-sized stream open. The
access decision (signature, expiry, key, owner) is taken before either, and audited the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from fastapi.responses import FileResponse, RedirectResponse, Response

from libs.config import Settings
from libs.s3 import S3Bucket, S3Client, S3Credentials, S3Error
from services.gateway.http.errors import ApiError


def video_key(batch_id: str, task_id: str) -> str:
    """The object name of a video (the batch service stores it under the same name)."""
    return f"{batch_id}/{task_id}.mp4"


class VideoStore(Protocol):
    """Tells whether a video exists and answers a request for it."""

    async def exists(self, batch_id: str, task_id: str) -> bool:
        """True when the video of this task is stored (ids are lower-cased UUIDs)."""
        ...

    def response(self, batch_id: str, task_id: str, *, disposition: str, headers: dict[str, str]) -> Response:
        """The answer that delivers the video (`disposition`: inline or attachment)."""
        ...

    async def read(self, batch_id: str, task_id: str) -> bytes | None:
        """The video's bytes (for a batch's zip); None when it is not stored."""
        ...


class LocalVideoStore:
    """Videos in the local asset directory, streamed by the gateway."""

    def __init__(self, asset_dir: Path) -> None:
        self._asset_dir = asset_dir

    def _path(self, batch_id: str, task_id: str) -> Path:
        # Callers pass only UUID-shaped ids, so no path can escape the asset directory.
        return self._asset_dir / video_key(batch_id, task_id)

    async def exists(self, batch_id: str, task_id: str) -> bool:
        """True when the file is there."""
        return await asyncio.to_thread(self._path(batch_id, task_id).is_file)

    async def read(self, batch_id: str, task_id: str) -> bytes | None:
        """The file's bytes; None when it is not there."""
        path = self._path(batch_id, task_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    def response(self, batch_id: str, task_id: str, *, disposition: str, headers: dict[str, str]) -> Response:
        """The file itself (FileResponse handles Range requests)."""
        return FileResponse(
            self._path(batch_id, task_id),
            media_type="video/mp4",
            filename=f"{task_id}.mp4",
            content_disposition_type=disposition,
            headers=headers,
        )


class S3VideoStore:
    """Videos in an S3 bucket, delivered by a redirect to a short-lived presigned URL."""

    def __init__(self, client: S3Client, presign_seconds: int) -> None:
        self._client = client
        self._presign_seconds = presign_seconds

    async def exists(self, batch_id: str, task_id: str) -> bool:
        """HEAD on the object; an unreachable or refusing S3 is a 503, never a 404."""
        with _storage_unavailable_as_503():
            return await self._client.object_exists(video_key(batch_id, task_id))

    async def read(self, batch_id: str, task_id: str) -> bytes | None:
        """The object's bytes; None when it is not there; 503 when S3 cannot be asked."""
        if not await self.exists(batch_id, task_id):
            return None
        with _storage_unavailable_as_503():
            return await self._client.get_object(video_key(batch_id, task_id))

    def response(self, batch_id: str, task_id: str, *, disposition: str, headers: dict[str, str]) -> Response:
        """307 to the presigned URL; S3 answers with our Content-Type and Content-Disposition."""
        url = self._client.presigned_get_url(
            video_key(batch_id, task_id),
            expires_seconds=self._presign_seconds,
            params={
                "response-content-type": "video/mp4",
                "response-content-disposition": f'{disposition}; filename="{task_id}.mp4"',
            },
        )
        return RedirectResponse(url, status_code=307, headers=headers)


def video_store(settings: Settings) -> VideoStore:
    """The store matching REELBATCH_STORAGE (the batch service writes to the same place)."""
    if settings.video_storage == "s3":
        client = S3Client(
            S3Bucket(settings.s3_endpoint_url, settings.s3_bucket, settings.s3_region),
            S3Credentials(settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value()),
            timeout_seconds=settings.grpc_deadline_seconds,
            public_endpoint_url=settings.s3_public_endpoint_url,
        )
        return S3VideoStore(client, settings.s3_presign_seconds)
    return LocalVideoStore(Path(settings.asset_dir))


@contextmanager
def _storage_unavailable_as_503() -> Iterator[None]:
    """An S3 error in the block answers 503 (retry shortly), never a 404 or a 500."""
    try:
        yield
    except S3Error:
        raise ApiError(
            503, "unavailable", "video storage is unavailable", headers={"Retry-After": "5"}
        ) from None
