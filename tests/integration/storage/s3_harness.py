"""What storage tests share: the test S3 server's address and key, and clients of its buckets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from moto import settings as moto_settings

from libs.s3 import S3Bucket, S3Client, S3Credentials

REGION = "eu-west-1"


@dataclass(frozen=True)
class S3Server:
    """The endpoint of the running server and a key pair it accepts."""

    endpoint_url: str
    credentials: S3Credentials


class S3Clients:
    """Clients of buckets on a test server, closed together when the test ends."""

    def __init__(self) -> None:
        self._opened: list[S3Client] = []

    def of(self, server: S3Server, bucket: str, credentials: S3Credentials | None = None) -> S3Client:
        """A client of `bucket` on `server`, with the server's key unless told otherwise."""
        client = S3Client(
            S3Bucket(server.endpoint_url, bucket, REGION),
            credentials or server.credentials,
            timeout_seconds=10.0,
        )
        self._opened.append(client)
        return client

    async def close(self) -> None:
        """Closes every client handed out."""
        for client in self._opened:
            await client.close()


@contextmanager
def presigned_urls_allowed() -> Iterator[None]:
    """Switches moto's authentication off for a moment.

    moto's SigV4 check reads only the Authorization header and fails (HTTP 500) on query-string
    signatures, so presigned GETs are served unchecked here; the presigned signature itself is
    checked against AWS's published example in tests/unit/storage.
    """
    enforced = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = enforced
