"""An S3-compatible object client: aiobotocore for requests, botocore's signer for presigned GETs.

Only what Reelbatch needs: put an object, ask whether one exists, read one back, create a bucket,
and presign a GET (query-string SigV4) so a browser can fetch an object without credentials.
Path-style addressing (`{endpoint}/{bucket}/{key}`), which every S3-compatible server (MinIO,
Ceph, R2, moto) accepts. Signing is the library's (ADR-061); this module only chooses the
settings and turns the library's errors into `S3Error`. The secret key is held privately and
never appears in a repr, a log line or an error.

The library is imported when it is first used, not with this module: importing aiobotocore costs
about a second of CPU (botocore alone a quarter), which processes storing videos locally should not
pay at start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from botocore.exceptions import BotoCoreError, ClientError
    from types_aiobotocore_s3 import S3Client as BotocoreS3

# S3 refuses presigned URLs valid for longer than seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; the secret is excluded from repr so it cannot leak into logs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class S3Bucket:
    """Where objects live: an endpoint, a bucket in it, and the region that signs requests."""

    endpoint_url: str
    bucket: str
    region: str

    def object_url(self, key: str) -> str:
        """Path-style URL of `key` (the key is percent-encoded, '/' kept)."""
        return f"{self.endpoint_url.rstrip('/')}/{quote(self.bucket, safe='')}/{quote(key, safe='/')}"


class S3Error(Exception):
    """An S3 request that did not succeed; `status` is the HTTP status (0 when none came back)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class S3Client:
    """Object operations on one bucket.

    The library's client (and its connection pool) is opened by the first request and lives until
    `close()`, or as long as the process. It makes one attempt per call: a failed upload is already
    retried by the task's own attempts, and the gateway answers 503 rather than wait.
    """

    def __init__(
        self,
        bucket: S3Bucket,
        credentials: S3Credentials,
        *,
        timeout_seconds: float,
        public_endpoint_url: str | None = None,
    ) -> None:
        self._bucket = bucket
        # Presigned URLs name the endpoint browsers reach (the signature covers the host).
        self._public_bucket = (
            S3Bucket(public_endpoint_url, bucket.bucket, bucket.region) if public_endpoint_url else bucket
        )
        self._credentials = credentials
        self._timeout_seconds = timeout_seconds
        self._client: BotocoreS3 | None = None
        self._opened = AsyncExitStack()
        self._opening = asyncio.Lock()

    @property
    def bucket(self) -> S3Bucket:
        """The bucket this client works on."""
        return self._bucket

    async def put_object(self, key: str, content: bytes, *, content_type: str) -> None:
        """Stores `content` under `key` (replacing it); S3Error when the server refuses."""
        s3 = await self._s3()
        refused, failed = _library_errors()
        try:
            await s3.put_object(Bucket=self._bucket.bucket, Key=key, Body=content, ContentType=content_type)
        except refused as error:
            raise S3Error(_status(error), f"PUT {key} refused: {_code(error)}") from None
        except failed as error:
            raise _unreachable("PUT", key, error) from None

    async def object_exists(self, key: str) -> bool:
        """True when `key` exists (HEAD); S3Error for anything but found / not found."""
        s3 = await self._s3()
        refused, failed = _library_errors()
        try:
            await s3.head_object(Bucket=self._bucket.bucket, Key=key)
        except refused as error:
            if _status(error) == 404:
                return False
            raise S3Error(_status(error), f"HEAD {key} refused (HTTP {_status(error)})") from None
        except failed as error:
            raise _unreachable("HEAD", key, error) from None
        return True

    async def get_object(self, key: str) -> bytes:
        """The bytes of `key` (whole object; meant for checks and small files)."""
        s3 = await self._s3()
        refused, failed = _library_errors()
        try:
            answer = await s3.get_object(Bucket=self._bucket.bucket, Key=key)
            async with answer["Body"] as body:
                return await body.read()
        except refused as error:
            raise S3Error(_status(error), f"GET {key} refused: {_code(error)}") from None
        except failed as error:
            raise _unreachable("GET", key, error) from None

    async def bucket_exists(self) -> bool:
        """True when the bucket exists (HEAD); False when the server says it does not; S3Error when
        it refuses to say (a key without s3:ListBucket) or cannot be reached."""
        s3 = await self._s3()
        refused, failed = _library_errors()
        try:
            await s3.head_bucket(Bucket=self._bucket.bucket)
        except refused as error:
            if _status(error) == 404:
                return False
            raise S3Error(_status(error), f"HEAD bucket refused (HTTP {_status(error)})") from None
        except failed as error:
            raise _unreachable("HEAD", self._bucket.bucket, error) from None
        return True

    async def create_bucket(self) -> None:
        """Creates the bucket (an existing bucket we own is fine)."""
        s3 = await self._s3()
        refused, failed = _library_errors()
        try:
            if self._bucket.region == "us-east-1":
                await s3.create_bucket(Bucket=self._bucket.bucket)
            else:
                await s3.create_bucket(
                    Bucket=self._bucket.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self._bucket.region},  # type: ignore[typeddict-item]
                )
        except refused as error:
            if _code(error) != "BucketAlreadyOwnedByYou":
                raise S3Error(_status(error), f"create bucket refused: {_code(error)}") from None
        except failed as error:
            raise _unreachable("PUT", self._bucket.bucket, error) from None

    def presigned_get_url(
        self, key: str, *, expires_seconds: int, params: Mapping[str, str] | None = None
    ) -> str:
        """A GET URL for `key` anyone can use until it expires (`params`: response-* overrides),
        on the public endpoint when one was given."""
        return presigned_get_url(
            self._public_bucket.object_url(key),
            self._credentials,
            self._bucket.region,
            expires_seconds=expires_seconds,
            params=params,
        )

    async def close(self) -> None:
        """Closes the library's client and its connections (a later request opens a new one)."""
        async with self._opening:
            self._client = None
            await self._opened.aclose()

    async def _s3(self) -> BotocoreS3:
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                self._client = await self._opened.enter_async_context(self._new_client())
            return self._client

    def _new_client(self) -> ClientCreatorContext[BotocoreS3]:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            s3={"addressing_style": "path"},
            connect_timeout=self._timeout_seconds,
            read_timeout=self._timeout_seconds,
            retries={"total_max_attempts": 1},
            # Checksums only where S3 requires them: S3-compatible servers differ in what
            # they accept (aws-chunked trailers), and a PUT already carries its SHA-256.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return get_session().create_client(
            "s3",
            region_name=self._bucket.region,
            endpoint_url=self._bucket.endpoint_url,
            aws_access_key_id=self._credentials.access_key_id,
            aws_secret_access_key=self._credentials.secret_access_key,
            config=config,
        )


def presigned_get_url(
    url: str,
    credentials: S3Credentials,
    region: str,
    *,
    expires_seconds: int,
    params: Mapping[str, str] | None = None,
) -> str:
    """`url` signed in its query string (SigV4), valid for `expires_seconds` (1 s to 7 days).

    botocore's own query-string signer, which needs no I/O: aiobotocore's `generate_presigned_url`
    is a coroutine, and the gateway builds its redirect synchronously.
    """
    if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_seconds must be within 1..{MAX_PRESIGN_SECONDS}")
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=url, params=dict(params or {}))
    signer = Credentials(credentials.access_key_id, credentials.secret_access_key)
    S3SigV4QueryAuth(signer, "s3", region, expires=expires_seconds).add_auth(request)
    return str(request.url)


def _library_errors() -> tuple[type[ClientError], type[BotoCoreError]]:
    """The library's two errors: an S3 answer that refuses, and no answer at all."""
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError


def _status(error: ClientError) -> int:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def _code(error: ClientError) -> str:
    """The <Code> of the S3 error document, or the HTTP status when there is none."""
    code = error.response.get("Error", {}).get("Code")
    return str(code)[:100] if code else f"HTTP {_status(error)}"


def _unreachable(method: str, key: str, error: BotoCoreError) -> S3Error:
    # botocore names only the endpoint URL in these errors: nothing secret goes into the message.
    return S3Error(0, f"{method} {key} failed: {type(error).__name__}")
