"""POST /api/enterprise/video-batch: the seed demo, validation, limits and backend refusals."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
from fastapi.testclient import TestClient

from libs.errors import ErrorCategory, FieldViolation, InvalidArgument, ServiceError
from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    CUSTOMER,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    IdempotencyKeyReusedError,
    InsufficientCreditsError,
    assert_error_shape,
    rpc_error,
    sent_items,
    transport_error,
)

URL = "/api/enterprise/video-batch"
SEED_DEMO = {
    "items": [
        {"prompt": "A cat playing piano", "model": "sora-2"},
        {"prompt": "A dog in space", "model": "sora-2"},
    ]
}


class UnsafeUrl(InvalidArgument):
    reason = "unsafe_webhook_url"


class RateLimitedError(ServiceError):
    category = ErrorCategory.RESOURCE_EXHAUSTED
    reason = "rate_limited"


def items(count: int, prompt: str = "A cat playing piano") -> list[dict[str, str]]:
    return [{"prompt": prompt, "model": "sora-2"} for _ in range(count)]


def test_seed_demo_batch_is_accepted_with_the_exact_202_body(client: TestClient, batch: FakeBatch) -> None:
    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 202
    body = response.json()
    request_id = body["request_id"]
    assert body == {
        "ok": True,
        "batch_id": BATCH_ID,
        "total_count": 2,
        "cost_per_video": 10,
        "required_credits": 20,
        "available_credits": 5000,
        "status": "queued",
        "request_id": request_id,
        "balance_snapshot": True,
        "enqueue": "queued",
    }
    # Without X-Request-ID a uuid4 is generated, used as the key, and echoed.
    assert uuid.UUID(request_id).version == 4
    assert response.headers["X-Request-ID"] == request_id
    [sent] = batch.requests("CreateBatch")
    assert sent.tenant_id == TENANT_ID
    assert sent.request_id == request_id
    assert [(item.prompt, item.model, item.duration_seconds) for item in sent_items(sent)] == [
        ("A cat playing piano", "sora-2", 0),
        ("A dog in space", "sora-2", 0),
    ]
    # As columns: three repeated fields, not one message per item.
    assert sent.HasField("item_columns") and not sent.items
    assert sent.webhook_url == ""


def test_client_request_id_is_the_idempotency_key_and_is_echoed(client: TestClient, batch: FakeBatch) -> None:
    body = {**SEED_DEMO, "webhook_url": "https://customer.com/webhook"}
    response = client.post(URL, json=body, headers={**CUSTOMER, "X-Request-ID": "demo-1234567890"})

    assert response.status_code == 202
    assert response.json()["request_id"] == "demo-1234567890"
    assert response.headers["X-Request-ID"] == "demo-1234567890"
    [sent] = batch.requests("CreateBatch")
    assert sent.request_id == "demo-1234567890"
    assert not sent.request_id_generated
    assert sent.webhook_url == "https://customer.com/webhook"


def test_a_generated_request_id_is_marked_so_batch_skips_the_replay_lookup(
    client: TestClient, batch: FakeBatch
) -> None:
    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 202
    [sent] = batch.requests("CreateBatch")
    assert sent.request_id == response.json()["request_id"] != ""
    assert sent.request_id_generated


def test_batch_mixing_prices_answers_a_null_cost_per_video(client: TestClient) -> None:
    body = {"items": [{"prompt": "a", "model": "sora-2"}, {"prompt": "b", "model": "veo-3"}]}

    response = client.post(URL, json=body, headers=CUSTOMER)

    assert response.status_code == 202
    assert response.json()["cost_per_video"] is None
    assert response.json()["required_credits"] == 30


def test_tab_newline_and_unicode_are_allowed_in_prompts(client: TestClient, batch: FakeBatch) -> None:
    prompt = "一只猫在弹钢琴\tscene 1\nscene 2 🎹"

    response = client.post(URL, json={"items": items(1, prompt)}, headers=CUSTOMER)

    assert response.status_code == 202
    assert sent_items(batch.requests("CreateBatch")[0])[0].prompt == prompt


def test_insufficient_credits_is_402_with_integer_required_and_available(
    client: TestClient, batch: FakeBatch
) -> None:
    batch.failures["CreateBatch"] = rpc_error(
        InsufficientCreditsError("not enough credits", required_credits=20, available_credits=5)
    )

    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 402
    error = assert_error_shape(response.json(), "insufficient_credits")
    assert error["required_credits"] == 20
    assert error["available_credits"] == 5


def test_reused_idempotency_key_with_another_body_is_409(client: TestClient, batch: FakeBatch) -> None:
    batch.failures["CreateBatch"] = rpc_error(
        IdempotencyKeyReusedError("X-Request-ID was used with another body")
    )

    response = client.post(URL, json=SEED_DEMO, headers={**CUSTOMER, "X-Request-ID": "demo-1"})

    assert response.status_code == 409
    assert_error_shape(response.json(), "idempotency_key_reused")


def test_unknown_model_refused_by_the_backend_is_422(client: TestClient, batch: FakeBatch) -> None:
    batch.failures["CreateBatch"] = rpc_error(InvalidArgument("unknown model 'sora-9'", model="sora-9"))

    response = client.post(URL, json={"items": items(1)}, headers=CUSTOMER)

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["message"] == "unknown model 'sora-9'"
    assert error["model"] == "sora-9"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}], ids=["absent", "empty"])
def test_missing_api_key_is_401_without_any_backend_call(
    client: TestClient, billing: FakeBilling, batch: FakeBatch, headers: dict[str, str]
) -> None:
    response = client.post(URL, json=SEED_DEMO, headers=headers)

    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")
    assert billing.calls == []
    assert batch.calls == []


def test_unknown_api_key_is_401_and_no_batch_is_created(
    client: TestClient, billing: FakeBilling, batch: FakeBatch
) -> None:
    response = client.post(URL, json=SEED_DEMO, headers={"X-API-Key": "stolen-key"})

    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")
    assert [request.api_key for request in billing.requests("AuthenticateApiKey")] == ["stolen-key"]
    assert batch.calls == []


# Bodies of the wrong shape (JSON types, unknown fields): the gateway's own refusals. Bodies that
# break a rule of the batch (an empty prompt, a bad webhook URL) are the batch service's to refuse:
# tests/integration/batch/test_input_rules_parity.py feeds them over REST and gRPC alike.
INVALID_BODIES: dict[str, tuple[Any, str, str]] = {
    "no items": ({}, "items", "missing"),
    "missing model": ({"items": [{"prompt": "a"}]}, "items[0].model", "missing"),
    "model not a string": ({"items": [{"prompt": "a", "model": 7}]}, "items[0].model", "string_type"),
    "unknown field": ({"items": items(1), "priority": "high"}, "priority", "extra_forbidden"),
    "unknown item field": (
        {"items": [{"prompt": "a", "model": "sora-2", "seed": 1}]},
        "items[0].seed",
        "extra_forbidden",
    ),
    "webhook_url not a string": ({"items": items(1), "webhook_url": 5}, "webhook_url", "string_type"),
    "duration beyond int32": (
        {"items": [{"prompt": "a", "model": "sora-2", "duration_seconds": 2**31}]},
        "items[0].duration_seconds",
        "less_than_equal",
    ),
    "items not a list": ({"items": "many"}, "items", "list_type"),
}


@pytest.mark.parametrize(("body", "field", "code"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_a_body_of_the_wrong_shape_is_422_naming_the_field_and_never_reaches_batch(
    client: TestClient, batch: FakeBatch, body: Any, field: str, code: str
) -> None:
    response = client.post(URL, json=body, headers=CUSTOMER)

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert {"field": field, "code": code} in [
        {"field": entry["field"], "code": entry["code"]} for entry in error["errors"]
    ]
    assert all(set(entry) == {"loc", "code", "message", "field"} for entry in error["errors"])
    assert batch.calls == []


def test_the_batch_services_field_violations_are_answered_as_errors_with_their_locations(
    client: TestClient, batch: FakeBatch
) -> None:
    violations = [
        FieldViolation(
            ("items", 150, "prompt"), "control_character", "prompt must not contain control characters"
        ),
        FieldViolation(("webhook_url",), "invalid_url", "webhook_url must be an absolute http(s) URL"),
    ]
    batch.failures["CreateBatch"] = rpc_error(InvalidArgument.of(violations))

    response = client.post(URL, json={"items": items(1)}, headers=CUSTOMER)

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["errors"] == [
        {
            "loc": ["items", 150, "prompt"],
            "code": "control_character",
            "message": "prompt must not contain control characters",
            "field": "items[150].prompt",
        },
        {
            "loc": ["webhook_url"],
            "code": "invalid_url",
            "message": "webhook_url must be an absolute http(s) URL",
            "field": "webhook_url",
        },
    ]
    assert error["message"].startswith("invalid request: items[150].prompt: prompt must not contain")


def test_the_webhook_services_refusal_of_the_url_is_a_violation_of_webhook_url(
    client: TestClient, batch: FakeBatch, webhook: FakeWebhook
) -> None:
    webhook.failures["ValidateUrl"] = rpc_error(UnsafeUrl("webhook URL must use https", url="http://x"))

    response = client.post(URL, json={"items": items(1), "webhook_url": "http://x"}, headers=CUSTOMER)

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert [(entry["loc"], entry["code"]) for entry in error["errors"]] == [
        (["webhook_url"], "unsafe_webhook_url")
    ]
    assert batch.requests("CreateBatch") == []


@pytest.mark.parametrize(
    "raw",
    [b'{"items": [', b"not json", b"", b'["items"]', b'{"items": [{"prompt": "a", "model": "sora-2"}]}x'],
    ids=["truncated", "not json", "empty", "array", "trailing garbage"],
)
def test_malformed_json_is_422(client: TestClient, batch: FakeBatch, raw: bytes) -> None:
    response = client.post(URL, content=raw, headers={**CUSTOMER, "Content-Type": "application/json"})

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["errors"]
    assert batch.calls == []


def test_ten_thousand_items_are_parsed_quickly_and_forwarded(
    roomy_client: TestClient, batch: FakeBatch
) -> None:
    body = orjson.dumps({"items": items(10_000, "A bird flying over the ocean at sunset, cinematic")})

    started = time.perf_counter()
    response = roomy_client.post(URL, content=body, headers=CUSTOMER)
    elapsed = time.perf_counter() - started

    assert response.status_code == 202
    assert response.json()["required_credits"] == 100_000
    assert len(sent_items(batch.requests("CreateBatch")[0])) == 10_000
    assert elapsed < 2.0


@pytest.mark.parametrize(
    "request_id",
    ["x" * 256, "tab\there", "naïve-ключ", "line\nbreak"[:4] + "\x7f"],
    ids=["too long", "tab", "non-ascii", "DEL"],
)
def test_bad_x_request_id_is_422_and_not_echoed(
    client: TestClient, batch: FakeBatch, request_id: str
) -> None:
    response = client.post(URL, json=SEED_DEMO, headers={**CUSTOMER, "X-Request-ID": request_id.encode()})

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["errors"][0]["field"] == "X-Request-ID"
    assert response.headers["X-Request-ID"] != request_id
    assert batch.calls == []


def test_request_id_of_255_printable_characters_is_accepted(client: TestClient, batch: FakeBatch) -> None:
    request_id = "k" * 254 + "~"

    response = client.post(URL, json=SEED_DEMO, headers={**CUSTOMER, "X-Request-ID": request_id})

    assert response.status_code == 202
    assert batch.requests("CreateBatch")[0].request_id == request_id


def test_body_over_the_limit_is_413_before_any_backend_call(
    client: TestClient, billing: FakeBilling, batch: FakeBatch
) -> None:
    body = orjson.dumps({"items": items(1, "x" * 70_000)})

    response = client.post(URL, content=body, headers={**CUSTOMER, "Content-Type": "application/json"})

    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")
    assert response.headers["X-Request-ID"]
    assert billing.calls == []
    assert batch.calls == []


def test_chunked_body_over_the_limit_is_413_before_any_backend_call(
    client: TestClient, billing: FakeBilling, batch: FakeBatch
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"items": [{"prompt": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'", "model": "sora-2"}]}'

    response = client.post(URL, content=chunks(), headers={**CUSTOMER, "Content-Type": "application/json"})

    # A create body is read as a stream (never held whole), so a chunked one is counted as it is
    # read, after the key was checked: billing authenticated it, nothing else was asked.
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")
    assert [name for name, _, _ in billing.calls] == ["AuthenticateApiKey"]
    assert batch.calls == []


def test_chunked_body_under_the_limit_is_accepted(client: TestClient, batch: FakeBatch) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"items": [{"prompt": "A cat playing piano",'
        yield b' "model": "sora-2"}]}'

    response = client.post(URL, content=chunks(), headers={**CUSTOMER, "Content-Type": "application/json"})

    assert response.status_code == 202
    assert sent_items(batch.requests("CreateBatch")[0])[0].prompt == "A cat playing piano"


@pytest.mark.parametrize(
    "failure",
    [
        transport_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
        transport_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        ConnectionResetError("connection reset by peer"),
    ],
    ids=["unavailable", "deadline exceeded", "connection reset"],
)
def test_backend_down_is_503_with_retry_after(
    client: TestClient, batch: FakeBatch, failure: Exception
) -> None:
    batch.failures["CreateBatch"] = failure

    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    error = assert_error_shape(response.json(), "unavailable")
    assert "connect" not in error["message"]


def test_billing_down_during_authentication_is_503_not_401(client: TestClient, billing: FakeBilling) -> None:
    billing.failures["AuthenticateApiKey"] = transport_error(grpc.StatusCode.UNAVAILABLE)

    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert_error_shape(response.json(), "unavailable")


def test_rate_limited_backend_is_429_with_retry_after(client: TestClient, batch: FakeBatch) -> None:
    batch.failures["CreateBatch"] = rpc_error(RateLimitedError("slow down", retry_after_seconds=7))

    response = client.post(URL, json=SEED_DEMO, headers=CUSTOMER)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert_error_shape(response.json(), "rate_limited")


@pytest.mark.parametrize(
    "failure",
    [
        transport_error(grpc.StatusCode.INTERNAL, "Traceback (most recent call last): secret"),
        transport_error(grpc.StatusCode.UNKNOWN, "Unexpected <class 'KeyError'>: 'secret'"),
        RuntimeError("boom: secret internals"),
    ],
    ids=["internal", "unknown", "python exception"],
)
def test_unexpected_failure_is_a_bare_500_without_internals(
    client: TestClient, batch: FakeBatch, failure: Exception
) -> None:
    batch.failures["CreateBatch"] = failure

    response = client.post(URL, json=SEED_DEMO, headers={**CUSTOMER, "X-Request-ID": "trace-me"})

    assert response.status_code == 500
    assert response.json() == {"ok": False, "error": {"code": "internal", "message": "internal error"}}
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["X-Request-ID"] == "trace-me"
