"""The routes clients poll (a batch, a page of its tasks) and the create route answer exactly these
statuses, bodies and headers: ids, query parameters, keys, backend failures and the key's rate.

Until ADR-065 a hot lane in front of FastAPI answered these requests too, and these cases were its
parity checks against the routes; FastAPI answers every request now, and each case states the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from libs.config import Settings
from libs.errors import InvalidArgument, NotFound
from libs.ledger_keys import task_transfer_id
from services.gateway.entrypoints.app import create_app
from tests.unit.gateway.gateway_fakes import (
    API_KEY,
    BATCH_ID,
    BATCH_VIEW,
    NO_TASK_DETAIL,
    TASK_ID,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    IdempotencyKeyReusedError,
    InsufficientCreditsError,
    Readiness,
    fake_backends,
    rpc_error,
    succeeded_task,
    transport_error,
)

BATCH_URL = f"/api/enterprise/video-batch/{BATCH_ID}"
CREATE_URL = "/api/enterprise/video-batch"
CREATE_BODY = b'{"items": [{"prompt": "a cat", "model": "sora-2"}, {"prompt": "a dog", "model": "sora-2"}]}'
ASKED = {"X-API-Key": API_KEY, "X-Request-ID": "parity-1"}
# A backend out of reach, as a gRPC status and as a refused connection: 503 either way.
BACKEND_DOWN = [
    (transport_error(grpc.StatusCode.UNAVAILABLE, "down"), 503),
    (ConnectionRefusedError("batch is down"), 503),
]

TASKS: dict[str, Any] = {
    "items": [
        {
            "task_id": TASK_ID,
            "batch_index": 0,
            "status": "succeeded",
            "model": "sora-2",
            "prompt": "A cat playing piano",
            # (the link without its query, whether it is signed): see `_answer`.
            "video_url": (f"http://127.0.0.1:8000/videos/{BATCH_ID}/{TASK_ID}.mp4", True),
            "error_message": None,
            "failure_type": None,
            "attempts": 1,
            "finished_at": "2026-01-20T10:00:00Z",
            "custom_id": None,
            "metadata": {},
            **NO_TASK_DETAIL,
            "ledger_transfer_id": task_transfer_id(TASK_ID),
        }
    ],
    "next_cursor": None,
}
UNAVAILABLE = {"code": "unavailable", "message": "a backend service is unavailable, retry later"}
RATE_LIMITED = {
    "code": "rate_limited",
    "message": "too many requests for this API key",
    "retry_after_seconds": 1000,
}


def _failed(error: dict[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _invalid(field: str, loc: list[str | int], code: str, message: str) -> dict[str, Any]:
    """A 422 of the gateway's own validation: every violation listed, the first in the message."""
    return _failed(
        {
            "code": "validation_error",
            "message": f"invalid request: {field}: {message}",
            "errors": [{"loc": loc, "code": code, "message": message, "field": field}],
        }
    )


def _refused(field: str, loc: list[str | int], message: str) -> dict[str, Any]:
    """A 422 the batch service answered, for one field."""
    return _failed(
        {
            "code": "validation_error",
            "message": message,
            "field": field,
            "errors": [{"loc": loc, "code": "validation_error", "message": message, "field": field}],
        }
    )


def _accepted(total: int, cost: int | None, request_id: str = "parity-1") -> dict[str, Any]:
    return {
        "ok": True,
        "batch_id": BATCH_ID,
        "total_count": total,
        "cost_per_video": cost,
        "required_credits": total * 10,
        "available_credits": 5000,
        "status": "queued",
        "request_id": request_id,
        "balance_snapshot": True,
        "enqueue": "queued",
    }


def _expected(
    status: int, body: Any, request_id: str = "parity-1", retry_after: str | None = None
) -> dict[str, Any]:
    return {
        "status": status,
        "body": body,
        "content-type": "application/json",
        "retry-after": retry_after,
        "request id": request_id,
        "has trace id": False,
    }


@pytest.fixture
def batch() -> FakeBatch:
    fake = FakeBatch()
    fake.tasks = [succeeded_task()]
    return fake


@pytest.fixture
def routes(settings: Settings, batch: FakeBatch) -> Iterator[TestClient]:
    """The app, with a key rate that refuses the 41st request (burst 40, next to no refill)."""
    limited = settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": 40})
    backends = fake_backends(FakeBilling(), batch, Readiness(), FakeWebhook())
    with TestClient(create_app(limited, backends)) as client:
        yield client


def _answer(client: TestClient, path: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(path, headers=headers)
    body = response.json()
    for item in body.get("items", []) if isinstance(body, dict) else []:
        if item.get("video_url"):
            # Signed links carry their expiry second; the signature itself is checked elsewhere.
            url, _, query = item["video_url"].partition("?")
            item["video_url"] = (url, "&sig=" in f"&{query}")
    return {
        "status": response.status_code,
        "body": body,
        "content-type": response.headers.get("content-type"),
        "retry-after": response.headers.get("retry-after"),
        "request id": response.headers.get("x-request-id"),
        "has trace id": "x-trace-id" in response.headers,
    }


NO_KEY = _failed({"code": "unauthorized", "message": "missing X-API-Key header"})
WRONG_KEY = _failed({"code": "unauthorized", "message": "invalid API key"})
NOT_FOUND = _failed({"code": "not_found", "message": "batch not found"})
BAD_CURSOR = _invalid(
    "cursor", ["cursor"], "string_pattern_mismatch", "String should match pattern '^[\\x21-\\x7e]*$'"
)


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (BATCH_URL, ASKED, _expected(200, BATCH_VIEW)),
        (f"/api/enterprise/video-batch/{BATCH_ID.upper()}", ASKED, _expected(200, BATCH_VIEW)),
        (f"{BATCH_URL}?unused=1", ASKED, _expected(200, BATCH_VIEW)),
        (f"{BATCH_URL}/tasks", ASKED, _expected(200, TASKS)),
        (f"{BATCH_URL}/tasks?status=succeeded&limit=1&cursor=abc", ASKED, _expected(200, TASKS)),
        (
            f"{BATCH_URL}/tasks?limit=0",
            ASKED,
            _expected(
                422,
                _invalid(
                    "limit", ["limit"], "greater_than_equal", "Input should be greater than or equal to 1"
                ),
            ),
        ),
        (f"{BATCH_URL}/tasks?limit=007", ASKED, _expected(200, TASKS)),
        (
            f"{BATCH_URL}/tasks?status=exploded",
            ASKED,
            _expected(
                422,
                _invalid(
                    "status",
                    ["status"],
                    "literal_error",
                    "Input should be 'queued', 'running', 'succeeded', 'failed' or 'cancelled'",
                ),
            ),
        ),
        (f"{BATCH_URL}/tasks?limit=5&limit=6", ASKED, _expected(200, TASKS)),
        ("/api/enterprise/video-batch/not-a-uuid", ASKED, _expected(404, NOT_FOUND)),
        (f"{BATCH_URL}/", ASKED, _expected(200, BATCH_VIEW)),
        (BATCH_URL, {"X-Request-ID": "parity-2"}, _expected(401, NO_KEY, "parity-2")),
        (
            f"{BATCH_URL}/tasks",
            {"X-API-Key": "", "X-Request-ID": "parity-3"},
            _expected(401, NO_KEY, "parity-3"),
        ),
        (
            BATCH_URL,
            {"X-API-Key": "wrong-key", "X-Request-ID": "parity-4"},
            _expected(401, WRONG_KEY, "parity-4"),
        ),
        (
            "/api/enterprise/video-batch/0f8fad5b-d9cb-469f-a165-70867728950f",
            ASKED,
            _expected(404, NOT_FOUND),
        ),
        (f"{BATCH_URL}/tasks?cursor=%ED%A0%80", ASKED, _expected(422, BAD_CURSOR)),
        (f"{BATCH_URL}/tasks?cursor=a%01b", ASKED, _expected(422, BAD_CURSOR)),
        (f"{BATCH_URL}/tasks?cursor=a%20b", ASKED, _expected(422, BAD_CURSOR)),
        (
            f"{BATCH_URL}/tasks?cursor=" + "x" * 1025,
            ASKED,
            _expected(
                422,
                _invalid(
                    "cursor", ["cursor"], "string_too_long", "String should have at most 1024 characters"
                ),
            ),
        ),
    ],
    ids=[
        "batch",
        "upper-case id",
        "unknown parameter",
        "tasks",
        "tasks filtered",
        "limit 0",
        "limit with zeros",
        "unknown status",
        "repeated limit",
        "malformed id",
        "trailing slash",
        "no key",
        "empty key",
        "wrong key",
        "unknown batch",
        "cursor with a lone surrogate",
        "cursor with a control byte",
        "cursor with a space",
        "cursor too long",
    ],
)
def test_the_polled_reads_answer(
    routes: TestClient, path: str, headers: dict[str, str], expected: dict[str, Any]
) -> None:
    assert _answer(routes, path, headers) == expected


@pytest.mark.parametrize(
    ("failure", "status", "expected"),
    [
        (rpc_error(NotFound("batch not found")), 404, _expected(404, NOT_FOUND)),
        (
            rpc_error(InvalidArgument("bad cursor", field="cursor")),
            422,
            _expected(422, _refused("cursor", ["cursor"], "bad cursor")),
        ),
        *[(*down, _expected(503, _failed(UNAVAILABLE), retry_after="2")) for down in BACKEND_DOWN],
    ],
    ids=["not found", "refused cursor", "backend down", "connection refused"],
)
def test_backend_failures_of_the_polled_reads_are_answered(
    routes: TestClient, batch: FakeBatch, failure: BaseException, status: int, expected: dict[str, Any]
) -> None:
    batch.failures = {"GetBatch": failure, "ListTasks": failure}
    for path in (BATCH_URL, f"{BATCH_URL}/tasks"):
        answered = _answer(routes, path, ASKED)
        assert answered["status"] == status
        assert answered == expected


def test_a_key_over_its_rate_is_refused(routes: TestClient) -> None:
    # Burst 40 and next to no refill: the app's limiter refuses the 41st request.
    answers = [_answer(routes, BATCH_URL, ASKED) for _ in range(41)]
    assert [a["status"] for a in answers] == [200] * 40 + [429]
    assert answers[-1] == _expected(429, _failed(RATE_LIMITED), retry_after="1000")


def test_reads_and_creates_reach_the_backend_once_each(settings: Settings, batch: FakeBatch) -> None:
    backends = fake_backends(FakeBilling(), batch, Readiness(), FakeWebhook())
    with TestClient(create_app(settings, backends)) as client:
        answered = [client.get(path, headers=ASKED) for path in (BATCH_URL, f"{BATCH_URL}/tasks")]
        refused = client.get(f"{BATCH_URL}/tasks?limit=0", headers=ASKED)
        created = client.post(CREATE_URL, content=CREATE_BODY, headers=ASKED)

    assert [response.json().get("batch_id") for response in answered] == [BATCH_ID, None]
    assert answered[1].json()["items"][0]["task_id"] == TASK_ID
    assert refused.status_code == 422
    assert (created.status_code, created.json()["request_id"]) == (202, "parity-1")
    assert [response.headers["X-Request-ID"] for response in (*answered, created)] == ["parity-1"] * 3
    assert [name for name, _, _ in batch.calls if name != "CountOpenBatches"] == [
        "GetBatch",
        "ListTasks",
        "CreateBatch",
    ]


def _created(client: TestClient, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    response = client.post(path, content=body, headers=headers)
    document = response.json()
    echoed = response.headers.get("x-request-id")
    generated = echoed != headers.get("X-Request-ID")
    if generated and isinstance(document, dict) and document.get("request_id") == echoed:
        document["request_id"] = "<the generated request id>"
    return {
        "status": response.status_code,
        "body": document,
        "content-type": response.headers.get("content-type"),
        "retry-after": response.headers.get("retry-after"),
        "request id": "<generated>" if generated else echoed,
        "has trace id": "x-trace-id" in response.headers,
    }


NOT_AN_INTEGER = "Input should be a valid integer"
DURATION_NOT_AN_INTEGER = _expected(
    422, _invalid("items[0].duration_seconds", ["items", 0, "duration_seconds"], "int_type", NOT_AN_INTEGER)
)
DEADLINE_NOT_AN_INTEGER = _expected(
    422, _invalid("deadline_seconds", ["deadline_seconds"], "int_type", NOT_AN_INTEGER)
)


@pytest.mark.parametrize(
    ("path", "headers", "body", "expected"),
    [
        (CREATE_URL, ASKED, CREATE_BODY, _expected(202, _accepted(2, 10))),
        (
            CREATE_URL,
            {"X-API-Key": API_KEY},
            CREATE_BODY,
            _expected(202, _accepted(2, 10, "<the generated request id>"), "<generated>"),
        ),
        (f"{CREATE_URL}?unused=1", ASKED, CREATE_BODY, _expected(202, _accepted(2, 10))),
        (CREATE_URL, ASKED, b'{"items": []}', _expected(202, _accepted(0, None))),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "", "model": "sora-2"}]}',
            _expected(202, _accepted(1, 10)),
        ),
        (
            CREATE_URL,
            ASKED,
            b"not json",
            _expected(
                422,
                _invalid("body", ["body"], "json_invalid", "Invalid JSON: expected ident at line 1 column 2"),
            ),
        ),
        (
            CREATE_URL,
            ASKED,
            b"",
            _expected(
                422,
                _invalid(
                    "body",
                    ["body"],
                    "json_invalid",
                    "Invalid JSON: EOF while parsing a value at line 1 column 0",
                ),
            ),
        ),
        (
            CREATE_URL,
            {"X-API-Key": API_KEY, "X-Request-ID": "tab\there"},
            CREATE_BODY,
            _expected(
                422,
                _invalid(
                    "X-Request-ID", ["X-Request-ID"], "invalid", "must be 1..255 printable ASCII characters"
                ),
                "<generated>",
            ),
        ),
        (CREATE_URL, {"X-Request-ID": "parity-5"}, CREATE_BODY, _expected(401, NO_KEY, "parity-5")),
        (
            CREATE_URL,
            {"X-API-Key": "wrong-key", "X-Request-ID": "parity-6"},
            CREATE_BODY,
            _expected(401, WRONG_KEY, "parity-6"),
        ),
        (f"{CREATE_URL}/", ASKED, CREATE_BODY, _expected(202, _accepted(2, 10))),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "webhook_url": "https://x.example/h"}',
            _expected(202, _accepted(1, 10)),
        ),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2", "duration_seconds": "6"}]}',
            DURATION_NOT_AN_INTEGER,
        ),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2", "duration_seconds": 6.0}]}',
            DURATION_NOT_AN_INTEGER,
        ),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": "60"}',
            DEADLINE_NOT_AN_INTEGER,
        ),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": 60.0}',
            DEADLINE_NOT_AN_INTEGER,
        ),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": true}',
            DEADLINE_NOT_AN_INTEGER,
        ),
    ],
    ids=[
        "create",
        "generated request id",
        "unknown parameter",
        "no items",
        "empty prompt",
        "not json",
        "empty body",
        "bad request id",
        "no key",
        "wrong key",
        "trailing slash",
        "webhook url",
        "duration as a string",
        "duration as a float",
        "deadline as a string",
        "deadline as a float",
        "deadline as a boolean",
    ],
)
def test_the_create_route_answers(
    routes: TestClient, path: str, headers: dict[str, str], body: bytes, expected: dict[str, Any]
) -> None:
    assert _created(routes, path, headers, body) == expected


@pytest.mark.parametrize(
    ("failure", "status", "expected"),
    [
        (
            rpc_error(
                InsufficientCreditsError("not enough credits", required_credits=20, available_credits=5)
            ),
            402,
            _expected(
                402,
                _failed(
                    {
                        "code": "insufficient_credits",
                        "message": "not enough credits",
                        "required_credits": 20,
                        "available_credits": 5,
                    }
                ),
            ),
        ),
        (
            rpc_error(IdempotencyKeyReusedError("this request id was used for another batch")),
            409,
            _expected(
                409,
                _failed(
                    {
                        "code": "idempotency_key_reused",
                        "message": "this request id was used for another batch",
                    }
                ),
            ),
        ),
        (
            rpc_error(InvalidArgument("unknown model", field="items[0].model")),
            422,
            _expected(422, _refused("items[0].model", ["items", 0, "model"], "unknown model")),
        ),
        *[(*down, _expected(503, _failed(UNAVAILABLE), retry_after="2")) for down in BACKEND_DOWN],
    ],
    ids=["insufficient credits", "request id reused", "unknown model", "backend down", "connection refused"],
)
def test_create_failures_are_answered(
    routes: TestClient, batch: FakeBatch, failure: BaseException, status: int, expected: dict[str, Any]
) -> None:
    batch.failures = {"CreateBatch": failure}
    answered = _created(routes, CREATE_URL, ASKED, CREATE_BODY)
    assert answered["status"] == status
    assert answered == expected


def test_the_page_asked_for_reaches_the_backend_and_odd_queries_are_answered(
    routes: TestClient, batch: FakeBatch
) -> None:
    asked = routes.get(f"{BATCH_URL}/tasks?status=failed&cursor=c%2B1&limit=1000", headers=ASKED)
    assert asked.status_code == 200
    listed = batch.requests("ListTasks")
    assert [(r.batch_id, r.status, r.cursor, r.limit) for r in listed] == [(BATCH_ID, "failed", "c+1", 1000)]
    for path, query, status, code in [
        (f"{BATCH_URL}/tasks", "limit=1001", 422, "validation_error"),
        (f"{BATCH_URL}/tasks", "limit=-1", 422, "validation_error"),
        (f"{BATCH_URL}/tasks", "limit=", 422, "validation_error"),
        (f"{BATCH_URL}/tasks", "cursor=", 200, None),
        (f"{BATCH_URL}/tasks", "cursor=" + "c" * 1025, 422, "validation_error"),
        (f"{BATCH_URL}/tasks", "status=failed&status=queued", 200, None),
        (f"{BATCH_URL}/tasks", "failure_type=internal", 200, None),
        (f"{BATCH_URL}/cancel", "", 405, "method_not_allowed"),
        (f"{BATCH_URL}/tasks/{TASK_ID}/video", "", 404, "not_found"),
        ("/api/enterprise/video-batch/1234", "", 404, "not_found"),
        ("/api/enterprise/video-batches", "", 404, "not_found"),
    ]:
        response = routes.get(f"{path}?{query}", headers=ASKED, follow_redirects=False)
        document = response.json()
        answered = (response.status_code, document["error"]["code"] if "error" in document else None)
        assert answered == (status, code), (path, query)
