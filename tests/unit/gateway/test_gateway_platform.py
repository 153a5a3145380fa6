"""Health, routing errors, request ids, OpenAPI, video files, the API key cache and the error table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import grpc
import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings
from libs.errors import field_location, field_path
from libs.rpc.errors import RemoteError
from services.gateway.http.auth import ApiKeyAuthenticator
from services.gateway.http.errors import ApiError, api_error_from_remote
from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CUSTOMER,
    TASK_ID,
    TENANT_ID,
    FakeBilling,
    Readiness,
    assert_error_shape,
)


def test_healthz_answers_ok_without_asking_backends(client: TestClient, readiness: Readiness) -> None:
    readiness.serving = {"billing": False, "batch": False, "webhook": False}

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_readyz_is_200_when_every_backend_serves(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "dependencies": {"billing": "up", "batch": "up", "webhook": "up"},
    }


def test_readyz_is_503_with_retry_after_naming_the_backend_that_is_down(
    client: TestClient, readiness: Readiness
) -> None:
    readiness.serving = {"billing": True, "batch": False}

    response = client.get("/readyz")

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    error = assert_error_shape(response.json(), "unavailable")
    assert error["dependencies"] == {"billing": "up", "batch": "down"}
    assert "batch" in error["message"]


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/api/enterprise/nothing-here")

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_wrong_method_is_a_json_405_with_allow(client: TestClient) -> None:
    response = client.delete("/api/enterprise/credits", headers=CUSTOMER)

    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/nowhere"), ("GET", "/api/enterprise/credits")],
    ids=["ok", "not found", "unauthorized"],
)
def test_every_response_echoes_the_request_id(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, headers={"X-Request-ID": "req-42"})

    assert response.headers["X-Request-ID"] == "req-42"


def test_a_request_id_is_generated_when_none_is_sent(client: TestClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]

    assert first
    assert first != second


def test_openapi_documents_every_route_and_the_error_shape(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operator = client.get("/admin/openapi.json").json()

    paths = document["paths"]
    assert {
        "/api/enterprise/video-batch",
        "/api/enterprise/video-batch/{batch_id}",
        "/api/enterprise/video-batch/{batch_id}/tasks",
        "/api/enterprise/video-batch/{batch_id}/cancel",
        "/api/enterprise/credits",
        "/api/enterprise/ledger",
        "/api/enterprise/models",
        "/api/enterprise/pricing",
        "/api/enterprise/files",
        "/videos/{batch_id}/{task_id}.mp4",
    } <= set(paths)
    # The operator API is a document of its own: neither lists the other's operations.
    assert {
        "/api/admin/tenants",
        "/api/admin/tenants/{tenant_id}/api-keys",
        "/api/admin/tenants/{tenant_id}/credits",
        "/api/admin/batches",
        "/api/admin/batches/{batch_id}",
        "/api/admin/batches/{batch_id}/tasks",
        "/healthz",
        "/readyz",
    } <= set(operator["paths"])
    assert not [path for path in paths if path.startswith("/api/admin")]
    assert not [path for path in operator["paths"] if path.startswith("/api/enterprise")]
    create = paths["/api/enterprise/video-batch"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateBatchRequest"
    }
    assert {"202", "401", "402", "409", "413", "422", "429", "500", "503"} <= set(create["responses"])
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in paths.values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"] == error_ref
    schemas = document["components"]["schemas"]
    assert {"items", "webhook_url"} <= set(schemas["CreateBatchRequest"]["properties"])
    assert schemas["BatchItemIn"]["additionalProperties"] is False
    assert "HTTPValidationError" not in schemas


def test_an_unsigned_video_path_is_refused_and_audited(
    client: TestClient, settings: Settings, billing: FakeBilling
) -> None:
    video = Path(settings.asset_dir) / BATCH_ID / f"{TASK_ID}.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 fake video")

    response = client.get(f"/videos/{BATCH_ID}/{TASK_ID}.mp4")

    assert response.status_code == 403
    assert_error_shape(response.json(), "forbidden")
    [audited] = billing.requests("RecordVideoAccess")
    assert (audited.batch_id, audited.via, audited.result) == (BATCH_ID, "signed_url", "missing_signature")


@pytest.mark.parametrize(
    "path",
    [
        f"/videos/{BATCH_ID}/secret.mp4",
        f"/videos/..%2F..%2Fetc/{TASK_ID}.mp4",
        f"/videos/{BATCH_ID}/..%2F{TASK_ID}.mp4",
    ],
    ids=["not a uuid", "encoded traversal in batch", "encoded traversal in task"],
)
def test_odd_video_paths_never_serve_a_file(client: TestClient, settings: Settings, path: str) -> None:
    # A real file next to the asset directory that a traversal would reach.
    Path(settings.asset_dir).mkdir(parents=True)
    (Path(settings.asset_dir).parent / "secret.mp4").write_bytes(b"secret")

    response = client.get(path)

    assert response.status_code in (403, 404)
    assert response.json()["ok"] is False
    assert b"secret" not in response.content


async def test_api_key_lookups_are_cached_for_at_most_the_ttl() -> None:
    billing = FakeBilling()
    now = [100.0]
    authenticator = ApiKeyAuthenticator(
        cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0, ttl_seconds=2.0, clock=lambda: now[0]
    )

    assert await authenticator.tenant_for("demo-key") == TENANT_ID
    now[0] += 1.9
    assert await authenticator.tenant_for("demo-key") == TENANT_ID
    assert len(billing.requests("AuthenticateApiKey")) == 1
    now[0] += 0.2
    del billing.api_keys["demo-key"]  # revoked meanwhile
    with pytest.raises(ApiError) as refused:
        await authenticator.tenant_for("demo-key")
    assert refused.value.status == 401
    assert len(billing.requests("AuthenticateApiKey")) == 2


async def test_concurrent_requests_with_an_uncached_key_share_one_billing_call() -> None:
    billing = FakeBilling()
    authenticator = ApiKeyAuthenticator(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)

    tenants = await asyncio.gather(*(authenticator.tenant_for("demo-key") for _ in range(20)))
    refused = await asyncio.gather(
        *(authenticator.tenant_for("new-key") for _ in range(5)), return_exceptions=True
    )

    assert tenants == [TENANT_ID] * 20
    assert all(isinstance(error, ApiError) and error.status == 401 for error in refused)
    assert len(billing.requests("AuthenticateApiKey")) == 2


async def test_unknown_api_keys_are_never_cached() -> None:
    billing = FakeBilling()
    authenticator = ApiKeyAuthenticator(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0)

    for _ in range(2):
        with pytest.raises(ApiError):
            await authenticator.tenant_for("new-key")
    billing.api_keys["new-key"] = TENANT_ID

    assert await authenticator.tenant_for("new-key") == TENANT_ID
    assert len(billing.requests("AuthenticateApiKey")) == 3


@pytest.mark.parametrize(
    ("code", "reason", "status", "expected_code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "validation_error", 422, "validation_error"),
        (grpc.StatusCode.NOT_FOUND, "not_found", 404, "not_found"),
        (grpc.StatusCode.ALREADY_EXISTS, "idempotency_key_reused", 409, "idempotency_key_reused"),
        (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_credits", 402, "insufficient_credits"),
        (grpc.StatusCode.FAILED_PRECONDITION, "batch_finished", 409, "batch_finished"),
        (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", 401, "unauthorized"),
        (grpc.StatusCode.PERMISSION_DENIED, "permission_denied", 403, "permission_denied"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted", 429, "rate_limited"),
        (grpc.StatusCode.UNAVAILABLE, "unavailable", 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "unavailable", 503, "unavailable"),
        (grpc.StatusCode.INTERNAL, "internal", 500, "internal"),
        (grpc.StatusCode.UNKNOWN, "unknown", 500, "internal"),
        (grpc.StatusCode.DATA_LOSS, "data_loss", 500, "internal"),
    ],
)
def test_grpc_failures_map_to_http_through_one_table(
    code: grpc.StatusCode, reason: str, status: int, expected_code: str
) -> None:
    translated = api_error_from_remote(RemoteError(code=code, reason=reason, message="why", details={}))

    assert (translated.status, translated.code) == (status, expected_code)
    assert ("Retry-After" in translated.headers) == (status in (429, 503))


def test_field_paths_read_like_json_paths_and_back() -> None:
    assert field_path(("items", 3, "prompt")) == "items[3].prompt"
    assert field_path(("limit",)) == "limit"
    assert field_location("items[3].prompt") == ("items", 3, "prompt")
    assert field_location("webhook_url") == ("webhook_url",)
