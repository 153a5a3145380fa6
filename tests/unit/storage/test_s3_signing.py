"""S3 requests and presigned URLs signed with SigV4 (checked against AWS's published example and
the requests the client sends), and the S3 storage wiring, without I/O.

The expected presigned URL is the worked example of
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html; that the header
signatures are right is checked by the S3 server of tests/integration/storage, which refuses any
request it cannot verify.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from aiobotocore.awsrequest import AioAWSResponse
from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from pydantic import SecretStr, ValidationError

from libs.config import Settings
from libs.s3 import S3Bucket, S3Client, S3Credentials, presigned_get_url
from services.batch.adapters.s3 import S3Storage
from services.batch.adapters.storage import InvalidVideo, LocalDirectoryStorage
from services.batch.bootstrap import build_storage
from services.batch.domain.batch import BatchId, TaskId
from services.gateway.adapters.video_store import LocalVideoStore, S3VideoStore, video_store

AWS_EXAMPLE = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
# botocore's signers read the clock as naive UTC.
AWS_EXAMPLE_TIME = datetime(2013, 5, 24)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def aws_example_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signs as at the moment of AWS's worked examples."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_args, **_kwargs: AWS_EXAMPLE_TIME)


async def _sent_requests(client: S3Client) -> list[AWSPreparedRequest]:
    """Records what `client` would send and answers 200 in place of a server (no I/O)."""
    sent: list[AWSPreparedRequest] = []

    def answer(request: AWSPreparedRequest, **_kwargs: Any) -> AioAWSResponse:
        sent.append(request)
        return AioAWSResponse(request.url, 200, HTTPHeaders(), _EmptyBody())

    library_client = await client._s3()
    # A before-send handler's answer replaces the HTTP exchange; the stubs type handlers as None-returning.
    library_client.meta.events.register_first("before-send.s3", answer)  # type: ignore[arg-type]
    return sent


class _EmptyBody:
    async def read(self) -> bytes:
        return b""


def _header(request: AWSPreparedRequest, name: str) -> str:
    value = request.headers[name]
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_a_get_is_signed_with_sigv4_for_the_buckets_region(aws_example_clock: None) -> None:
    client = S3Client(S3Bucket("http://s3.test", "videos", "eu-west-1"), AWS_EXAMPLE, timeout_seconds=1)
    sent = await _sent_requests(client)

    assert await client.object_exists("a/b.mp4")
    await client.close()

    authorization = _header(sent[0], "Authorization")
    assert authorization.startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, "
    )
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date," in authorization
    assert _header(sent[0], "X-Amz-Date") == "20130524T000000Z"
    assert _header(sent[0], "X-Amz-Content-SHA256") == EMPTY_SHA256
    assert sent[0].url == "http://s3.test/videos/a/b.mp4"


async def test_a_put_with_a_payload_signs_the_payloads_hash(aws_example_clock: None) -> None:
    content = b"Welcome to Amazon S3."
    client = S3Client(S3Bucket("http://s3.test", "videos", "us-east-1"), AWS_EXAMPLE, timeout_seconds=1)
    sent = await _sent_requests(client)

    await client.put_object("test$file.text", content, content_type="text/plain")
    await client.close()

    assert _header(sent[0], "X-Amz-Content-SHA256") == hashlib.sha256(content).hexdigest()
    assert "x-amz-content-sha256" in _header(sent[0], "Authorization")
    assert AWS_EXAMPLE.secret_access_key not in str(sent[0].headers)


def test_a_presigned_get_matches_the_aws_example(aws_example_clock: None) -> None:
    url = presigned_get_url(
        "https://examplebucket.s3.amazonaws.com/test.txt",
        AWS_EXAMPLE,
        "us-east-1",
        expires_seconds=86400,
    )

    assert url.startswith("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" in url
    assert url.endswith("&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_presigning_refuses_lifetimes_s3_would_refuse() -> None:
    client = S3Client(S3Bucket("https://s3.example.com", "b", "us-east-1"), AWS_EXAMPLE, timeout_seconds=1)
    for seconds in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="expires_seconds"):
            client.presigned_get_url("k", expires_seconds=seconds)


def test_the_secret_key_never_shows_in_a_repr() -> None:
    client = S3Client(S3Bucket("https://s3.example.com", "b", "us-east-1"), AWS_EXAMPLE, timeout_seconds=1)
    assert AWS_EXAMPLE.secret_access_key not in repr(AWS_EXAMPLE)
    assert AWS_EXAMPLE.secret_access_key not in repr(client)


def test_object_urls_are_path_style_with_the_key_percent_encoded() -> None:
    bucket = S3Bucket("http://127.0.0.1:9000/", "videos", "us-east-1")
    assert bucket.object_url("a b/c+d.mp4") == "http://127.0.0.1:9000/videos/a%20b/c%2Bd.mp4"


class _RecordingS3Client(S3Client):
    """Records uploads instead of sending them."""

    def __init__(self) -> None:
        super().__init__(S3Bucket("http://s3.test", "videos", "us-east-1"), AWS_EXAMPLE, timeout_seconds=1)
        self.sent: list[str] = []

    async def put_object(self, key: str, content: bytes, *, content_type: str) -> None:
        self.sent.append(key)


async def test_a_file_that_is_not_a_video_is_refused_before_any_upload() -> None:
    client = _RecordingS3Client()
    with pytest.raises(InvalidVideo):
        await S3Storage(client, "http://gw.test").store(
            BatchId(uuid.uuid4()), TaskId(uuid.uuid4()), b"<html>error</html>"
        )

    assert client.sent == []


def _s3_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "storage": "s3",
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "s3_bucket": "videos",
        "s3_access_key_id": "AKIAEXAMPLE",
        "s3_secret_access_key": SecretStr("secret"),
    }
    values.update(overrides)
    return Settings.model_validate(values)


def test_s3_storage_is_selected_by_settings_for_the_batch_service_and_the_gateway(tmp_path: Path) -> None:
    assert isinstance(build_storage(_s3_settings()), S3Storage)
    assert isinstance(video_store(_s3_settings()), S3VideoStore)
    local = Settings(asset_dir=str(tmp_path))
    assert isinstance(build_storage(local), LocalDirectoryStorage)
    assert isinstance(video_store(local), LocalVideoStore)


def test_s3_storage_without_a_bucket_or_a_key_pair_is_refused_at_startup() -> None:
    for missing in ({"s3_bucket": ""}, {"s3_access_key_id": ""}, {"s3_secret_access_key": SecretStr("")}):
        with pytest.raises(ValidationError, match="REELBATCH_STORAGE=s3"):
            _s3_settings(**missing)
