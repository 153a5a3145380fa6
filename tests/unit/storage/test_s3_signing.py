"""SigV4 signing checked against AWS's published examples, and the S3 storage wiring, without I/O.

The expected signatures are the worked examples of
https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html and
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from libs.config import Settings
from libs.s3 import S3Bucket, S3Client, S3Credentials, SigV4Signer
from services.batch.adapters.s3 import S3Storage
from services.batch.adapters.storage import InvalidVideo, LocalDirectoryStorage
from services.batch.bootstrap import build_storage
from services.batch.domain.batch import BatchId, TaskId
from services.gateway.adapters.video_store import LocalVideoStore, S3VideoStore, video_store

AWS_EXAMPLE = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _signature(authorization: str) -> str:
    return authorization.rsplit("Signature=", 1)[1]


def test_a_get_with_a_range_header_is_signed_like_the_aws_example() -> None:
    headers = SigV4Signer(AWS_EXAMPLE, "us-east-1").sign_headers(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        payload_sha256=EMPTY_SHA256,
        headers={"Range": "bytes=0-9"},
        now=AWS_EXAMPLE_TIME,
    )

    assert _signature(headers["authorization"]) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," in headers["authorization"]
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert "host" not in headers  # httpx sends it


def test_a_put_with_a_payload_is_signed_like_the_aws_example() -> None:
    content = b"Welcome to Amazon S3."
    headers = SigV4Signer(AWS_EXAMPLE, "us-east-1").sign_headers(
        "PUT",
        "https://examplebucket.s3.amazonaws.com/test%24file.text",
        payload_sha256=hashlib.sha256(content).hexdigest(),
        headers={"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
        now=AWS_EXAMPLE_TIME,
    )

    assert _signature(headers["authorization"]) == (
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    )


def test_a_presigned_get_matches_the_aws_example() -> None:
    url = SigV4Signer(AWS_EXAMPLE, "us-east-1").presign(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", expires_seconds=86400, now=AWS_EXAMPLE_TIME
    )

    assert url.startswith("https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" in url
    assert url.endswith("&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_presigning_refuses_lifetimes_s3_would_refuse() -> None:
    signer = SigV4Signer(AWS_EXAMPLE, "us-east-1")
    for seconds in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="expires_seconds"):
            signer.presign("GET", "https://s3.example.com/b/k", expires_seconds=seconds)


def test_the_secret_key_never_shows_in_a_repr() -> None:
    signer = SigV4Signer(AWS_EXAMPLE, "us-east-1")
    assert AWS_EXAMPLE.secret_access_key not in repr(AWS_EXAMPLE)
    assert AWS_EXAMPLE.secret_access_key not in repr(signer)


def test_object_urls_are_path_style_with_the_key_percent_encoded() -> None:
    bucket = S3Bucket("http://127.0.0.1:9000/", "videos", "us-east-1")
    assert bucket.object_url("a b/c+d.mp4") == "http://127.0.0.1:9000/videos/a%20b/c%2Bd.mp4"


async def test_a_file_that_is_not_a_video_is_refused_before_any_upload() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
        client = S3Client(http, S3Bucket("http://s3.test", "videos", "us-east-1"), AWS_EXAMPLE)
        with pytest.raises(InvalidVideo):
            await S3Storage(client, "http://gw.test").store(
                BatchId(uuid.uuid4()), TaskId(uuid.uuid4()), b"<html>error</html>"
            )

    assert sent == []


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
