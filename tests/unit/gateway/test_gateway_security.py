"""Gateway security rules without I/O: rate limits, operator roles, failed sign-in limits, key
revocation in the auth cache, and signed video links."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.config import Settings
from libs.errors import Unauthenticated
from services.gateway.entrypoints.app import create_app
from services.gateway.http.auth import ApiKeyAuthenticator
from services.gateway.http.errors import ApiError
from services.gateway.http.rate_limits import FailedAttemptLimiter, SharedBuckets, SharedRateLimiter
from services.gateway.use_cases.video_links import HmacSha256, LinkRefused, VideoLinks, VideoMode
from tests.unit.gateway.gateway_fakes import (
    ADMIN,
    API_KEY,
    BATCH_ID,
    CUSTOMER,
    KEY_ID,
    TASK_ID,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    assert_error_shape,
    fake_backends,
    rpc_error,
)

FINANCE_KEY = "rb_admin_finance-key-for-tests"
ADMIN_KEY = "rb_admin_admin-key-for-tests"


class OperatorBilling(FakeBilling):
    """Billing that also knows two operator keys."""

    def __init__(self) -> None:
        super().__init__()
        self.admin_keys = {FINANCE_KEY: "finance", ADMIN_KEY: "admin"}

    async def AuthenticateAdminKey(
        self, request: billing_pb2.AuthenticateAdminKeyRequest, timeout: float | None = None
    ) -> billing_pb2.AuthenticateAdminKeyResponse:
        self._record("AuthenticateAdminKey", request, timeout)
        role = self.admin_keys.get(request.api_key)
        if role is None:
            raise rpc_error(Unauthenticated("invalid API key"))
        return billing_pb2.AuthenticateAdminKeyResponse(key_id=f"{role}-key", role=role)


@pytest.fixture
def billing() -> OperatorBilling:
    return OperatorBilling()


def _client(settings: Settings, billing: FakeBilling, **limits: object) -> TestClient:
    limited = settings.model_copy(update=limits)
    return TestClient(create_app(limited, fake_backends(billing, FakeBatch(), Readiness(), FakeWebhook())))


@pytest.fixture
def strict_client(settings: Settings, billing: OperatorBilling) -> Iterator[TestClient]:
    """Tiny limits: 3 requests of burst, 3 failed admin attempts."""
    with _client(
        settings,
        billing,
        rate_limit_per_second=0.5,
        rate_limit_burst=3,
        admin_auth_max_failures=3,
    ) as client:
        yield client


async def test_token_bucket_allows_the_burst_then_asks_to_wait_and_refills(billing: OperatorBilling) -> None:
    now = [0.0]
    billing.now = lambda: now[0]
    buckets = SharedBuckets(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)
    bucket = SharedRateLimiter(buckets, 2.0, 3, clock=lambda: now[0])

    assert [await bucket.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await bucket.acquire("k") == pytest.approx(0.5)
    assert await bucket.acquire("other") == 0.0  # per key
    now[0] += 0.5
    assert await bucket.acquire("k") == 0.0
    assert await bucket.acquire("k") > 0


async def test_failed_attempts_block_an_address_until_it_has_waited(billing: OperatorBilling) -> None:
    now = [100.0]
    billing.now = lambda: now[0]
    buckets = SharedBuckets(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)
    failures = FailedAttemptLimiter(buckets, "admin_sign_in", 2, 60.0)
    await failures.record_failure("10.0.0.1")
    assert await failures.retry_after("10.0.0.1") == 0.0
    now[0] += 10
    await failures.record_failure("10.0.0.1")

    # Two failures at once, then one per 30 s: 10 s after the first, 20 s more to wait.
    assert await failures.retry_after("10.0.0.1") == pytest.approx(20.0)
    assert await failures.retry_after("10.0.0.2") == 0.0
    now[0] += 20.5
    assert await failures.retry_after("10.0.0.1") == 0.0


def test_a_key_over_its_rate_gets_429_with_retry_after(strict_client: TestClient) -> None:
    answers = [strict_client.get("/api/enterprise/credits", headers=CUSTOMER) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[3].headers["retry-after"] == "2"
    assert assert_error_shape(answers[3].json(), "rate_limited")["retry_after_seconds"] == 2


def test_a_tenant_with_too_many_open_batches_gets_429(settings: Settings, billing: OperatorBilling) -> None:
    # The fake batch service holds 3 unfinished batches of the tenant and refuses, as the real one
    # does in the create's transaction, a create whose limit they reach.
    batch = FakeBatch()
    limited = settings.model_copy(update={"max_open_batches": 3})
    with TestClient(create_app(limited, fake_backends(billing, batch, Readiness(), FakeWebhook()))) as client:
        response = client.post(
            "/api/enterprise/video-batch",
            json={"items": [{"prompt": "A cat", "model": "sora-2"}]},
            headers=CUSTOMER,
        )
        roomy = settings.model_copy(update={"max_open_batches": 4})
        with TestClient(
            create_app(roomy, fake_backends(billing, batch, Readiness(), FakeWebhook()))
        ) as other:
            accepted = other.post(
                "/api/enterprise/video-batch",
                json={"items": [{"prompt": "A cat", "model": "sora-2"}]},
                headers=CUSTOMER,
            )

    assert accepted.status_code == 202
    limits = [
        request.open_batch_limit
        for name, request, _ in batch.calls
        if name == "CreateBatch" and isinstance(request, batch_pb2.CreateBatchRequest)
    ]
    assert limits == [3, 4], "the gateway sends its limit with each create"
    assert "CountOpenBatches" not in {name for name, _, _ in batch.calls}, "no call of its own"
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert "3 batches" in assert_error_shape(response.json(), "rate_limited")["message"]


def test_wrong_admin_credentials_are_401_then_429_even_with_the_right_token(
    strict_client: TestClient,
) -> None:
    wrong = [
        strict_client.get("/api/admin/tenants", headers={"Authorization": f"Bearer {secret}"})
        for secret in ("nope", "rb_admin_unknown", "still-wrong")
    ]
    blocked = strict_client.get("/api/admin/tenants", headers=ADMIN)

    assert [answer.status_code for answer in wrong] == [401, 401, 401]
    assert_error_shape(wrong[0].json(), "unauthorized")
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


def test_dashboard_sign_in_failures_count_against_the_same_limit(strict_client: TestClient) -> None:
    form = {"token": "wrong-token", "next": "/admin/batches"}
    answers = [strict_client.post("/admin/sign-in", data=form) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert "Retry-After" in answers[3].headers
    assert strict_client.get("/api/admin/tenants", headers=ADMIN).status_code == 429


def test_a_finance_key_reads_but_cannot_top_up_or_create(
    client: TestClient, billing: OperatorBilling
) -> None:
    finance = {"Authorization": f"Bearer {FINANCE_KEY}"}

    assert client.get(f"/api/admin/tenants/{TENANT_ID}/credits", headers=finance).status_code == 200
    top_up = client.post(
        f"/api/admin/tenants/{TENANT_ID}/credits", json={"credits": 5, "reference": "r"}, headers=finance
    )
    create = client.post("/api/admin/tenants", json={"name": "x"}, headers=finance)
    keys = client.post("/api/admin/admin-keys", json={"role": "admin"}, headers=finance)

    for refused in (top_up, create, keys):
        assert refused.status_code == 403
        assert_error_shape(refused.json(), "forbidden")
    assert billing.requests("TopUp") == [] and billing.requests("CreateTenant") == []
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.post("/api/admin/tenants", json={"name": "x"}, headers=admin).status_code == 201


async def test_revoking_a_key_drops_it_from_the_cache_at_once() -> None:
    billing = FakeBilling()
    authenticator = ApiKeyAuthenticator(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)
    assert (await authenticator.caller_for(API_KEY)).key_id == KEY_ID
    del billing.api_keys[API_KEY]  # revoked in billing
    assert await authenticator.tenant_for(API_KEY) == TENANT_ID  # still cached here

    authenticator.forget_key(KEY_ID)

    with pytest.raises(ApiError) as refused:
        await authenticator.tenant_for(API_KEY)
    assert refused.value.status == 401


def _links(now: float) -> VideoLinks:
    return VideoLinks(b"secret", 300, clock=lambda: now)


def _query(path: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in path.split("?", 1)[1].split("&"))


def test_a_signed_link_verifies_until_it_expires() -> None:
    path = _links(1000.0).signed_path(
        _links(1000.0).grant(BATCH_ID, TASK_ID, VideoMode.PLAY, TENANT_ID, KEY_ID)
    )

    grant = _links(1299.0).verify(BATCH_ID, TASK_ID, _query(path))
    assert (grant.tenant_id, grant.key_id, grant.mode) == (TENANT_ID, KEY_ID, VideoMode.PLAY)
    with pytest.raises(LinkRefused) as expired:
        _links(1300.0).verify(BATCH_ID, TASK_ID, _query(path))
    assert expired.value.reason == "expired"


@pytest.mark.parametrize(
    ("field", "value"),
    [("sig", "0" * 64), ("exp", "99999999"), ("mode", "embed"), ("tenant", KEY_ID), ("key", TENANT_ID)],
)
def test_changing_any_part_of_a_link_breaks_its_signature(field: str, value: str) -> None:
    links = _links(1000.0)
    query = _query(links.signed_path(links.grant(BATCH_ID, TASK_ID, VideoMode.DOWNLOAD, TENANT_ID, KEY_ID)))

    with pytest.raises(LinkRefused) as refused:
        links.verify(BATCH_ID, TASK_ID, {**query, field: value})
    assert refused.value.reason == "bad_signature"
    # Another video with the same query is refused too: the path is signed.
    with pytest.raises(LinkRefused):
        links.verify(BATCH_ID, "b3c1d9a0-0000-4000-8000-000000000001", query)


@pytest.mark.parametrize("key", [b"", b"secret", b"k" * 64, b"long key " * 20])
def test_the_precomputed_hmac_is_the_standard_hmac_sha256(key: bytes) -> None:
    mac = HmacSha256(key)
    for message in (b"", b"v1\n/videos/a/b.mp4\ndownload", bytes(range(256)) * 3):
        assert mac.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_links_signed_together_are_the_links_signed_one_by_one() -> None:
    links = _links(1000.0)
    task_ids = [TASK_ID, "b3c1d9a0-0000-4000-8000-000000000001"]

    together = links.signed_paths(BATCH_ID, task_ids, VideoMode.DOWNLOAD, TENANT_ID, KEY_ID)

    assert together == [
        links.signed_path(links.grant(BATCH_ID, task_id, VideoMode.DOWNLOAD, TENANT_ID, KEY_ID))
        for task_id in task_ids
    ]
    for task_id, path in zip(task_ids, together, strict=True):
        assert links.verify(BATCH_ID, task_id, _query(path)).expires_at == 1300


def test_the_link_endpoint_audits_and_signs_for_the_callers_key(
    client: TestClient, settings: Settings, billing: OperatorBilling
) -> None:

    video = Path(settings.asset_dir) / BATCH_ID / f"{TASK_ID}.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")

    link = client.get(
        f"/api/enterprise/video-batch/{BATCH_ID}/tasks/{TASK_ID}/video",
        params={"mode": "embed"},
        headers=CUSTOMER,
    )
    assert link.status_code == 200, link.text
    served = client.get(link.json()["url"].removeprefix(settings.public_base_url))

    assert served.status_code == 200
    assert served.headers["content-disposition"].startswith("inline")
    assert "x-frame-options" not in served.headers  # embeddable
    assert served.content == b"\x00\x00\x00\x18ftypmp42"
    assert f"key={KEY_ID}" in link.json()["url"]
    audited = billing.requests("RecordVideoAccess")
    assert [(entry.via, entry.mode, entry.result) for entry in audited] == [
        ("api", "embed", "allowed"),
        ("signed_url", "embed", "allowed"),
    ]


def test_a_link_of_a_revoked_key_is_refused(
    client: TestClient, billing: OperatorBilling, settings: Settings
) -> None:
    links = VideoLinks(settings.video_url_secret.get_secret_value().encode(), 60)
    path = links.signed_path(links.grant(BATCH_ID, TASK_ID, VideoMode.DOWNLOAD, TENANT_ID, KEY_ID))
    billing.key_revoked = True

    response = client.get(path)

    assert response.status_code == 403
    assert assert_error_shape(response.json(), "forbidden")["reason"] == "key_revoked"
    assert billing.requests("RecordVideoAccess")[-1].result == "key_revoked"


def test_production_refuses_the_default_video_link_secret() -> None:
    with pytest.raises(ValueError, match="VIDEO_URL_SECRET"):
        Settings(env="production", admin_token="a-long-production-secret")
    assert Settings(env="production", admin_token="a-long-production-secret", video_url_secret="s" * 32)
