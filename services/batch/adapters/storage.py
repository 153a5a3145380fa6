"""Where generated videos are kept: a local directory by default (served by the gateway).

Every video passes through `AssetStorage.store`, which refuses anything that is not an MP4 file:
a task is paid only once a real video is stored, never for an empty or broken download.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import FailureType, ProviderFailure, VideoAsset

# An ISO base media file (MP4) starts with a box whose type, at bytes 4..8, is 'ftyp'.
_MP4_SIGNATURE = b"ftyp"
_MIN_VIDEO_BYTES = 16
# Below this size a write costs less than the hop to a worker thread (a thread sharing the GIL
# with a busy event loop waits for it again after each of the few system calls of a small write).
_INLINE_WRITE_BYTES = 64 * 1024


class InvalidVideo(ProviderFailure):
    """The provider's asset is not a video we can serve; worth another attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureType.PROVIDER_ERROR, message)


def require_mp4(content: bytes) -> None:
    """Raises `InvalidVideo` unless `content` looks like an MP4 file."""
    if not content:
        raise InvalidVideo("provider returned an empty video")
    if len(content) < _MIN_VIDEO_BYTES or content[4:8] != _MP4_SIGNATURE:
        raise InvalidVideo(f"provider returned something that is not an MP4 video ({len(content)} bytes)")


def asset_key(batch_id: BatchId, task_id: TaskId) -> str:
    """The object name of a task's video, also the path part of its public URL after /videos/."""
    return f"{batch_id}/{task_id}.mp4"


class AssetStorage(Protocol):
    """Keeps a task's video and tells where customers download it."""

    async def store(self, batch_id: BatchId, task_id: TaskId, content: bytes) -> VideoAsset:
        """Validates and stores the video (replacing an earlier one of the same task)."""
        ...


class GatewayServedStorage(ABC):
    """An `AssetStorage` whose videos are objects named by `asset_key` and served by the gateway at
    `{public_base_url}/videos/{key}`: the MP4 check, the name and the URL around each backend's write."""

    def __init__(self, public_base_url: str) -> None:
        self._public_base_url = public_base_url.rstrip("/")

    async def store(self, batch_id: BatchId, task_id: TaskId, content: bytes) -> VideoAsset:
        """Validates the video, writes it under its object name and tells where it is served."""
        require_mp4(content)
        key = asset_key(batch_id, task_id)
        return VideoAsset(
            path=await self._write(key, content),
            url=f"{self._public_base_url}/videos/{key}",
            size_bytes=len(content),
        )

    @abstractmethod
    async def _write(self, key: str, content: bytes) -> str:
        """Stores a valid video under `key` (replacing an earlier one); returns where it is kept."""


class LocalDirectoryStorage(GatewayServedStorage):
    """Videos under `asset_dir/{batch_id}/{task_id}.mp4`, served at `{public_base_url}/videos/...`."""

    def __init__(self, asset_dir: Path, public_base_url: str) -> None:
        super().__init__(public_base_url)
        self._asset_dir = asset_dir

    async def _write(self, key: str, content: bytes) -> str:
        """Writes to a temporary name, then renames: the gateway never serves half a video."""
        path = self._asset_dir / key
        if len(content) <= _INLINE_WRITE_BYTES:
            _write_atomically(path, content)
        else:
            await asyncio.to_thread(_write_atomically, path, content)
        return str(path)


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        descriptor = _create(partial)
        try:
            unwritten = memoryview(content)
            while unwritten:
                unwritten = unwritten[os.write(descriptor, unwritten) :]
        finally:
            os.close(descriptor)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _create(path: Path) -> int:
    # The batch's directory exists for all but its first video: try first, create it if missing.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)
