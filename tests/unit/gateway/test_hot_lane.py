"""The hot lane answers exactly as the FastAPI routes do, and leaves them everything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from starlette.responses import Response

from libs.config import Settings
from libs.errors import InvalidArgument, NotFound
from services.gateway.api.hot_lane import BATCH_ROUTE, TASKS_ROUTE, HotLane, TaskQuery, plain_read
from services.gateway.entrypoints.app import create_app
from services.gateway.http.auth import ApiKeyAuthenticator
from services.gateway.http.middleware import RequestContextMiddleware
from services.gateway.use_cases.batch_creation import BatchCreation
from services.gateway.use_cases.batch_reads import BatchReads
from tests.unit.gateway.gateway_fakes import (
    API_KEY,
    BATCH_ID,
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


@pytest.fixture
def batch() -> FakeBatch:
    fake = FakeBatch()
    fake.tasks = [succeeded_task()]
    return fake


@pytest.fixture
def both(settings: Settings, batch: FakeBatch) -> Iterator[tuple[TestClient, TestClient]]:
    """The app with its lane and without it, on the same backends."""
    limited = settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": 40})
    backends = fake_backends(FakeBilling(), batch, Readiness(), FakeWebhook())
    with (
        TestClient(create_app(limited, backends)) as lane,
        TestClient(create_app(limited, backends, hot_lane=False)) as routes,
    ):
        yield lane, routes


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


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (BATCH_URL, ASKED),
        (f"/api/enterprise/video-batch/{BATCH_ID.upper()}", ASKED),
        (f"{BATCH_URL}?unused=1", ASKED),
        (f"{BATCH_URL}/tasks", ASKED),
        (f"{BATCH_URL}/tasks?status=succeeded&limit=1&cursor=abc", ASKED),
        (f"{BATCH_URL}/tasks?limit=0", ASKED),
        (f"{BATCH_URL}/tasks?limit=007", ASKED),
        (f"{BATCH_URL}/tasks?status=exploded", ASKED),
        (f"{BATCH_URL}/tasks?limit=5&limit=6", ASKED),
        ("/api/enterprise/video-batch/not-a-uuid", ASKED),
        (f"{BATCH_URL}/", ASKED),
        (BATCH_URL, {"X-Request-ID": "parity-2"}),
        (f"{BATCH_URL}/tasks", {"X-API-Key": "", "X-Request-ID": "parity-3"}),
        (BATCH_URL, {"X-API-Key": "wrong-key", "X-Request-ID": "parity-4"}),
        ("/api/enterprise/video-batch/0f8fad5b-d9cb-469f-a165-70867728950f", ASKED),
        (f"{BATCH_URL}/tasks?cursor=%ED%A0%80", ASKED),
        (f"{BATCH_URL}/tasks?cursor=a%01b", ASKED),
        (f"{BATCH_URL}/tasks?cursor=a%20b", ASKED),
        (f"{BATCH_URL}/tasks?cursor=" + "x" * 1025, ASKED),
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
def test_the_lane_answers_as_the_routes_do(
    both: tuple[TestClient, TestClient], path: str, headers: dict[str, str]
) -> None:
    lane, routes = both
    assert _answer(lane, path, headers) == _answer(routes, path, headers)


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (rpc_error(NotFound("batch not found")), 404),
        (rpc_error(InvalidArgument("bad cursor", field="cursor")), 422),
        *BACKEND_DOWN,
    ],
    ids=["not found", "refused cursor", "backend down", "connection refused"],
)
def test_backend_failures_are_answered_as_the_routes_answer_them(
    both: tuple[TestClient, TestClient], batch: FakeBatch, failure: BaseException, status: int
) -> None:
    lane, routes = both
    batch.failures = {"GetBatch": failure, "ListTasks": failure}
    for path in (BATCH_URL, f"{BATCH_URL}/tasks"):
        answered = _answer(lane, path, ASKED)
        assert answered["status"] == status
        assert answered == _answer(routes, path, ASKED)


def test_a_key_over_its_rate_is_refused_by_the_lane_as_by_the_routes(
    both: tuple[TestClient, TestClient],
) -> None:
    lane, routes = both
    # Burst 40 and next to no refill, for each app's own limiter: each refuses its 41st request.
    answers = [_answer(lane, BATCH_URL, ASKED) for _ in range(41)]
    expected = [_answer(routes, BATCH_URL, ASKED) for _ in range(41)]
    assert [a["status"] for a in answers] == [200] * 40 + [429]
    assert answers[-1] == expected[-1]


def test_plain_reads_are_recognised_and_everything_else_is_left_to_the_routes() -> None:
    assert plain_read(BATCH_URL, b"x=1") == plain_read(BATCH_URL, b"")
    assert plain_read(f"/api/enterprise/video-batch/{BATCH_ID.upper()}", b"") == plain_read(BATCH_URL, b"")
    batch = plain_read(BATCH_URL, b"")
    assert batch is not None and (batch.route, batch.batch_id, batch.page) == (BATCH_ROUTE, BATCH_ID, None)
    tasks = plain_read(f"{BATCH_URL}/tasks", b"status=failed&cursor=c%2B1&limit=1000")
    assert tasks is not None and tasks.route == TASKS_ROUTE
    assert tasks.page == TaskQuery("failed", "c+1", 1000)
    for path, query in [
        (f"{BATCH_URL}/tasks", b"limit=1001"),
        (f"{BATCH_URL}/tasks", b"limit=-1"),
        (f"{BATCH_URL}/tasks", b"limit="),
        (f"{BATCH_URL}/tasks", b"cursor="),
        (f"{BATCH_URL}/tasks", b"cursor=" + b"c" * 1025),
        (f"{BATCH_URL}/tasks", b"status=failed&status=queued"),
        (f"{BATCH_URL}/tasks", b"failure_type=internal"),
        (f"{BATCH_URL}/cancel", b""),
        (f"{BATCH_URL}/tasks/{TASK_ID}/video", b""),
        ("/api/enterprise/video-batch/1234", b""),
        ("/api/enterprise/video-batches", b""),
    ]:
        assert plain_read(path, query) is None, (path, query)


def test_the_lane_answers_plain_reads_itself_and_passes_the_rest_on(
    settings: Settings, batch: FakeBatch
) -> None:
    backends = fake_backends(FakeBilling(), batch, Readiness(), FakeWebhook())
    passed_on: list[str] = []

    async def routes(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])
        await Response(b"{}", media_type="application/json")(scope, receive, send)

    authenticator = ApiKeyAuthenticator(backends.billing, settings.grpc_deadline_seconds)
    lane = HotLane(
        routes,
        reads=BatchReads(settings, backends),
        creation=BatchCreation(settings, backends),
        authenticator=authenticator,
        in_request_context=lambda answer: RequestContextMiddleware(answer, settings.max_body_bytes),
    )
    client = TestClient(lane)  # no lifespan: `routes` only answers requests
    answered = [client.get(path, headers=ASKED) for path in (BATCH_URL, f"{BATCH_URL}/tasks")]
    client.get(f"{BATCH_URL}/tasks?limit=0", headers=ASKED)
    client.post(f"{BATCH_URL}/cancel", headers=ASKED)
    created = client.post(CREATE_URL, content=CREATE_BODY, headers=ASKED)

    assert [response.json().get("batch_id") for response in answered] == [BATCH_ID, None]
    assert answered[1].json()["items"][0]["task_id"] == TASK_ID
    assert (created.status_code, created.json()["request_id"]) == (202, "parity-1")
    # The lane's own request context echoes the id without the FastAPI app's middleware.
    assert [response.headers["X-Request-ID"] for response in (*answered, created)] == ["parity-1"] * 3
    assert passed_on == [f"{BATCH_URL}/tasks", f"{BATCH_URL}/cancel"]
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


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        (CREATE_URL, ASKED, CREATE_BODY),
        (CREATE_URL, {"X-API-Key": API_KEY}, CREATE_BODY),
        (f"{CREATE_URL}?unused=1", ASKED, CREATE_BODY),
        (CREATE_URL, ASKED, b'{"items": []}'),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "", "model": "sora-2"}]}'),
        (CREATE_URL, ASKED, b"not json"),
        (CREATE_URL, ASKED, b""),
        (CREATE_URL, {"X-API-Key": API_KEY, "X-Request-ID": "tab\there"}, CREATE_BODY),
        (CREATE_URL, {"X-Request-ID": "parity-5"}, CREATE_BODY),
        (CREATE_URL, {"X-API-Key": "wrong-key", "X-Request-ID": "parity-6"}, CREATE_BODY),
        (f"{CREATE_URL}/", ASKED, CREATE_BODY),
        (
            CREATE_URL,
            ASKED,
            b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "webhook_url": "https://x.example/h"}',
        ),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "a cat", "model": "sora-2", "duration_seconds": "6"}]}'),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "a cat", "model": "sora-2", "duration_seconds": 6.0}]}'),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": "60"}'),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": 60.0}'),
        (CREATE_URL, ASKED, b'{"items": [{"prompt": "a cat", "model": "sora-2"}], "deadline_seconds": true}'),
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
def test_the_lane_creates_as_the_routes_do(
    both: tuple[TestClient, TestClient], path: str, headers: dict[str, str], body: bytes
) -> None:
    lane, routes = both
    assert _created(lane, path, headers, body) == _created(routes, path, headers, body)


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (
            rpc_error(
                InsufficientCreditsError("not enough credits", required_credits=20, available_credits=5)
            ),
            402,
        ),
        (rpc_error(IdempotencyKeyReusedError("this request id was used for another batch")), 409),
        (rpc_error(InvalidArgument("unknown model", field="items[0].model")), 422),
        *BACKEND_DOWN,
    ],
    ids=["insufficient credits", "request id reused", "unknown model", "backend down", "connection refused"],
)
def test_create_failures_are_answered_as_the_routes_answer_them(
    both: tuple[TestClient, TestClient], batch: FakeBatch, failure: BaseException, status: int
) -> None:
    lane, routes = both
    batch.failures = {"CreateBatch": failure}
    answered = _created(lane, CREATE_URL, ASKED, CREATE_BODY)
    assert answered["status"] == status
    assert answered == _created(routes, CREATE_URL, ASKED, CREATE_BODY)
