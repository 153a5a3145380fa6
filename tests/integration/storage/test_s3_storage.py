"""S3 video storage against a real S3-compatible server (moto, SigV4 enforced): upload, refusal of
bad signatures, a failed upload as a retried provider_error, and serving through a signed link."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from libs.config import Settings
from libs.s3 import S3Credentials, S3Error
from services.batch.adapters.s3 import S3Storage, StorageUnavailable
from services.batch.domain.batch import BatchId, TaskId
from services.batch.domain.provider import FailureType
from services.gateway.entrypoints.app import create_app
from tests.integration.storage.s3_harness import REGION, S3Clients, S3Server, presigned_urls_allowed
from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CUSTOMER,
    TASK_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
)

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


def _bucket_name() -> str:
    return f"videos-{uuid.uuid4().hex[:12]}"


async def _new_bucket(server: S3Server, s3_clients: S3Clients) -> str:
    name = _bucket_name()
    await s3_clients.of(server, name).create_bucket()
    return name


async def test_a_stored_video_round_trips_through_s3_byte_for_byte(
    s3_server: S3Server, s3_clients: S3Clients
) -> None:
    bucket = await _new_bucket(s3_server, s3_clients)
    client = s3_clients.of(s3_server, bucket)
    batch_id, task_id = BatchId(uuid.uuid4()), TaskId(uuid.uuid4())

    asset = await S3Storage(client, "https://api.example.com/").store(batch_id, task_id, VIDEO)

    assert await client.get_object(f"{batch_id}/{task_id}.mp4") == VIDEO
    assert asset.path == f"s3://{bucket}/{batch_id}/{task_id}.mp4"
    assert asset.url == f"https://api.example.com/videos/{batch_id}/{task_id}.mp4"
    assert asset.size_bytes == len(VIDEO)
    assert await client.object_exists(f"{batch_id}/{task_id}.mp4")
    assert not await client.object_exists(f"{batch_id}/{uuid.uuid4()}.mp4")


async def test_requests_signed_with_a_wrong_secret_or_an_unknown_key_are_refused(
    s3_server: S3Server, s3_clients: S3Clients
) -> None:
    bucket = await _new_bucket(s3_server, s3_clients)
    wrong_secret = S3Credentials(s3_server.credentials.access_key_id, "not-the-secret")
    unknown_key = S3Credentials("AKIAUNKNOWNKEY000000", s3_server.credentials.secret_access_key)

    for credentials in (wrong_secret, unknown_key):
        with pytest.raises(S3Error) as refused:
            await s3_clients.of(s3_server, bucket, credentials).put_object(
                "x.mp4", VIDEO, content_type="video/mp4"
            )
        assert refused.value.status == 403
    with pytest.raises(S3Error) as mismatch:
        await s3_clients.of(s3_server, bucket, wrong_secret).get_object("x.mp4")
    assert "SignatureDoesNotMatch" in str(mismatch.value)
    # Nothing was written by the refused uploads.
    assert not await s3_clients.of(s3_server, bucket).object_exists("x.mp4")


async def test_an_upload_to_a_missing_bucket_is_a_transient_provider_error(
    s3_server: S3Server, s3_clients: S3Clients
) -> None:
    storage = S3Storage(s3_clients.of(s3_server, _bucket_name()), "http://127.0.0.1:8000")

    with pytest.raises(StorageUnavailable) as failed:
        await storage.store(BatchId(uuid.uuid4()), TaskId(uuid.uuid4()), VIDEO)

    # provider_error is transient: the executor retries it, then fails and refunds the task.
    assert failed.value.failure_type == FailureType.PROVIDER_ERROR
    assert failed.value.transient
    assert "NoSuchBucket" in failed.value.message
    assert s3_server.credentials.secret_access_key not in failed.value.message


async def test_an_unreachable_s3_is_a_transient_provider_error_too(s3_clients: S3Clients) -> None:
    unreachable = S3Server("http://127.0.0.1:9", S3Credentials("AKIAEXAMPLE", "secret-value"))
    storage = S3Storage(s3_clients.of(unreachable, "videos"), "http://127.0.0.1:8000")

    with pytest.raises(StorageUnavailable) as failed:
        await storage.store(BatchId(uuid.uuid4()), TaskId(uuid.uuid4()), VIDEO)

    assert failed.value.transient
    assert "secret-value" not in failed.value.message


async def test_a_presigned_url_serves_the_object_without_credentials(
    s3_server: S3Server, http: httpx.AsyncClient, s3_clients: S3Clients
) -> None:
    bucket = await _new_bucket(s3_server, s3_clients)
    client = s3_clients.of(s3_server, bucket)
    await client.put_object("a/b.mp4", VIDEO, content_type="video/mp4")

    url = client.presigned_get_url(
        "a/b.mp4",
        expires_seconds=60,
        params={"response-content-disposition": 'attachment; filename="b.mp4"'},
    )
    with presigned_urls_allowed():
        served = await http.get(url)

    assert served.status_code == 200, served.text
    assert served.content == VIDEO
    assert served.headers["content-disposition"] == 'attachment; filename="b.mp4"'
    assert s3_server.credentials.secret_access_key not in url


async def test_a_signed_video_link_redirects_to_s3_which_serves_the_video(
    s3_server: S3Server, http: httpx.AsyncClient, s3_clients: S3Clients
) -> None:
    bucket = await _new_bucket(s3_server, s3_clients)
    await s3_clients.of(s3_server, bucket).put_object(
        f"{BATCH_ID}/{TASK_ID}.mp4", VIDEO, content_type="video/mp4"
    )
    settings = Settings(
        storage="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=bucket,
        s3_region=REGION,
        s3_access_key_id=s3_server.credentials.access_key_id,
        s3_secret_access_key=s3_server.credentials.secret_access_key,
        s3_presign_seconds=30,
    )
    billing = FakeBilling()
    app = create_app(settings, fake_backends(billing, FakeBatch(), Readiness(), FakeWebhook()))

    with TestClient(app) as gateway:
        link = gateway.get(
            f"/api/enterprise/video-batch/{BATCH_ID}/tasks/{TASK_ID}/video",
            params={"mode": "download"},
            headers=CUSTOMER,
        )
        assert link.status_code == 200, link.text
        redirect = gateway.get(
            link.json()["url"].removeprefix(settings.public_base_url), follow_redirects=False
        )
        missing = gateway.get(
            f"/api/enterprise/video-batch/{BATCH_ID}/tasks/{uuid.uuid4()}/video", headers=CUSTOMER
        )

    assert redirect.status_code == 307
    assert redirect.headers["cache-control"] == "private, no-store"
    location = redirect.headers["location"]
    assert location.startswith(f"{s3_server.endpoint_url}/{bucket}/{BATCH_ID}/{TASK_ID}.mp4?")
    assert "X-Amz-Expires=30" in location
    with presigned_urls_allowed():
        served = await http.get(location)
    assert served.status_code == 200, served.text
    assert served.content == VIDEO
    assert served.headers["content-type"] == "video/mp4"
    assert served.headers["content-disposition"].startswith("attachment")
    assert missing.status_code == 404
    assert [entry.result for entry in billing.requests("RecordVideoAccess")] == [
        "allowed",
        "allowed",
        "not_found",
    ]
