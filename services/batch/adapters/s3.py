"""Videos in an S3-compatible bucket, under the same object names as the local directory.

A refused or failed upload raises a transient `provider_error`: the attempt is retried and, once
the attempts are used up, the task fails and is refunded; it is never paid without a stored video.
"""

from __future__ import annotations

from libs.s3 import S3Client, S3Error
from services.batch.adapters.storage import GatewayServedStorage
from services.batch.domain.provider import FailureType, ProviderFailure


class StorageUnavailable(ProviderFailure):
    """The video could not be stored; worth another attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureType.PROVIDER_ERROR, message)


class S3Storage(GatewayServedStorage):
    """An `AssetStorage` over S3: objects `{batch_id}/{task_id}.mp4`, URLs on the gateway."""

    def __init__(self, client: S3Client, public_base_url: str) -> None:
        super().__init__(public_base_url)
        self._client = client

    async def _write(self, key: str, content: bytes) -> str:
        """Uploads the video in one PUT (S3 makes it visible only once complete)."""
        try:
            await self._client.put_object(key, content, content_type="video/mp4")
        except S3Error as error:
            raise StorageUnavailable(f"could not store the video: {error}") from None
        return f"s3://{self._client.bucket.bucket}/{key}"
