"""Where uploaded input images are kept: beside the videos (the local asset directory or the S3
bucket), under `inputs/{tenant_id}/{file_id}`, so a tenant's id never reaches another's file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from libs.s3 import S3Client, S3Error


def input_key(tenant_id: str, file_id: str) -> str:
    """The object name of an input image."""
    return f"inputs/{tenant_id}/{file_id}"


class InputFileStore(Protocol):
    """Keeps and returns input images' bytes."""

    async def put(self, tenant_id: str, file_id: str, content: bytes, content_type: str) -> None:
        """Stores the image (a new id each upload: nothing is ever overwritten)."""
        ...

    async def get(self, tenant_id: str, file_id: str) -> bytes | None:
        """The image's bytes; None when it is not there."""
        ...


class LocalInputFiles:
    """Input images under `asset_dir/inputs/`."""

    def __init__(self, asset_dir: Path) -> None:
        self._asset_dir = asset_dir

    def _path(self, tenant_id: str, file_id: str) -> Path:
        # Ids are checked (UUID tenant, "file-" + hex) before they reach a path.
        return self._asset_dir / input_key(tenant_id, file_id)

    async def put(self, tenant_id: str, file_id: str, content: bytes, content_type: str) -> None:
        """Writes the file (its directory created on first use)."""
        path = self._path(tenant_id, file_id)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

        await asyncio.to_thread(write)

    async def get(self, tenant_id: str, file_id: str) -> bytes | None:
        """Reads the file, or None."""
        path = self._path(tenant_id, file_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None


class S3InputFiles:
    """Input images in the video bucket."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    async def put(self, tenant_id: str, file_id: str, content: bytes, content_type: str) -> None:
        """PUTs the object."""
        await self._client.put_object(input_key(tenant_id, file_id), content, content_type=content_type)

    async def get(self, tenant_id: str, file_id: str) -> bytes | None:
        """GETs the object; None on a 404."""
        try:
            return await self._client.get_object(input_key(tenant_id, file_id))
        except S3Error as error:
            if error.status == 404:
                return None
            raise
