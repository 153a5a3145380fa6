"""Customer reads: batch, tasks, cancel, list, credits and ledger shapes; tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from libs.ledger_keys import task_transfer_id, transfer_id
from services.gateway.schemas.admin_batches import AdminBatchView
from services.gateway.schemas.batches import BatchView
from services.gateway.schemas.fields import json_bytes
from services.gateway.schemas.tasks import TaskView
from services.gateway.use_cases.video_links import VideoMode, video_links
from tests.unit.gateway.gateway_fakes import (
    BATCH_ID,
    BATCH_VIEW,
    CREATED_AT,
    CUSTOMER,
    KEY_ID,
    NO_TASK_DETAIL,
    OTHER_TENANT_ID,
    TASK_ID,
    TENANT_ID,
    FakeBatch,
    FakeBilling,
    assert_error_shape,
    succeeded_task,
    timestamp,
)

BATCH_URL = f"/api/enterprise/video-batch/{BATCH_ID}"

BATCH_FIELDS = {
    "batch_id",
    "status",
    "total_count",
    "success_count",
    "failed_count",
    "cancelled_count",
    "pending_count",
    "frozen_credits",
    "credits_spent",
    "refunded_credits",
    "settlement_status",
    "created_at",
    "finished_at",
    "webhook_url",
    "retry_of",
    "retries",
    "name",
    "metadata",
}


def test_batch_has_exactly_the_documented_fields_with_rfc3339_utc_times(
    client: TestClient, batch: FakeBatch
) -> None:
    response = client.get(BATCH_URL, headers=CUSTOMER)

    assert response.status_code == 200
    assert response.json() == BATCH_VIEW
    [sent] = batch.requests("GetBatch")
    assert (sent.tenant_id, sent.batch_id) == (TENANT_ID, BATCH_ID)


def test_finished_batch_shows_its_finish_time_and_webhook(client: TestClient, batch: FakeBatch) -> None:
    batch.batch.finished_at.CopyFrom(timestamp(CREATED_AT.replace(minute=3, second=7)))
    batch.batch.webhook_url = "https://customer.com/webhook"

    body = client.get(BATCH_URL, headers=CUSTOMER).json()

    assert body["finished_at"] == "2026-01-20T10:03:07Z"
    assert body["webhook_url"] == "https://customer.com/webhook"


def test_upper_case_batch_id_is_looked_up_in_canonical_form(client: TestClient, batch: FakeBatch) -> None:
    response = client.get(f"/api/enterprise/video-batch/{BATCH_ID.upper()}", headers=CUSTOMER)

    assert response.status_code == 200
    assert batch.requests("GetBatch")[0].batch_id == BATCH_ID


@pytest.mark.parametrize(
    "malformed",
    ["not-a-uuid", "1", "550e8400e29b41d4a716446655440000", "'; DROP TABLE batches;--", "%2e%2e"],
)
@pytest.mark.parametrize("suffix", ["", "/tasks"])
def test_malformed_batch_id_is_404_without_asking_batch(
    client: TestClient, batch: FakeBatch, malformed: str, suffix: str
) -> None:
    response = client.get(f"/api/enterprise/video-batch/{malformed}{suffix}", headers=CUSTOMER)

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert batch.calls == []


def test_malformed_batch_id_on_cancel_is_404(client: TestClient, batch: FakeBatch) -> None:
    response = client.post("/api/enterprise/video-batch/nope/cancel", headers=CUSTOMER)

    assert response.status_code == 404
    assert batch.calls == []


def test_another_tenants_batch_is_404(client: TestClient, batch: FakeBatch) -> None:
    batch.batch.tenant_id = OTHER_TENANT_ID

    response = client.get(BATCH_URL, headers=CUSTOMER)

    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert batch.requests("GetBatch")[0].tenant_id == TENANT_ID


def test_tasks_page_turns_empty_strings_into_nulls(client: TestClient, batch: FakeBatch) -> None:
    batch.tasks = [
        succeeded_task(),
        batch_pb2.Task(
            task_id="b3c1d9a0-0000-4000-8000-000000000001",
            batch_id=BATCH_ID,
            batch_index=1,
            status="failed",
            model="sora-2",
            prompt="A dog in space #fail",
            unit_price=10,
            error_message="blocked by content policy",
            failure_type="content_policy",
            attempts=1,
        ),
    ]

    response = client.get(f"{BATCH_URL}/tasks", headers=CUSTOMER, params={"status": "failed", "limit": 2})

    assert response.status_code == 200
    body = response.json()
    # The stored URL is replaced by a short-lived signed download link issued to the caller's key.
    signed = body["items"][0]["video_url"]
    assert signed.startswith(f"http://127.0.0.1:8000/videos/{BATCH_ID}/{TASK_ID}.mp4?mode=download&")
    assert "&sig=" in signed
    body["items"][0]["video_url"] = f"http://127.0.0.1:8000/videos/{BATCH_ID}/{TASK_ID}.mp4"
    assert body == {
        "items": [
            {
                "task_id": TASK_ID,
                "batch_index": 0,
                "status": "succeeded",
                "model": "sora-2",
                "prompt": "A cat playing piano",
                "video_url": f"http://127.0.0.1:8000/videos/{BATCH_ID}/{TASK_ID}.mp4",
                "error_message": None,
                "failure_type": None,
                "attempts": 1,
                "finished_at": "2026-01-20T10:00:00Z",
                "custom_id": None,
                "metadata": {},
                **NO_TASK_DETAIL,
                # A finished task's receipt: derived from its id, as its webhook carries it.
                "ledger_transfer_id": task_transfer_id(TASK_ID),
            },
            {
                "task_id": "b3c1d9a0-0000-4000-8000-000000000001",
                "batch_index": 1,
                "status": "failed",
                "model": "sora-2",
                "prompt": "A dog in space #fail",
                "video_url": None,
                "error_message": "blocked by content policy",
                "failure_type": "content_policy",
                "attempts": 1,
                "finished_at": None,
                "custom_id": None,
                "metadata": {},
                **NO_TASK_DETAIL,
                "ledger_transfer_id": task_transfer_id("b3c1d9a0-0000-4000-8000-000000000001"),
            },
        ],
        "next_cursor": None,
    }
    [sent] = batch.requests("ListTasks")
    assert (sent.tenant_id, sent.batch_id, sent.status, sent.limit) == (TENANT_ID, BATCH_ID, "failed", 2)


def test_tasks_default_to_pages_of_50_from_the_start(client: TestClient, batch: FakeBatch) -> None:
    client.get(f"{BATCH_URL}/tasks", headers=CUSTOMER)

    [sent] = batch.requests("ListTasks")
    assert (sent.limit, sent.cursor, sent.status) == (50, "", "")


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"status": "exploded"}, {"cursor": "c" * 1025}],
    ids=["limit 0", "limit 1001", "limit not a number", "unknown status", "cursor too long"],
)
def test_bad_task_query_is_422(client: TestClient, batch: FakeBatch, params: dict[str, object]) -> None:
    response = client.get(f"{BATCH_URL}/tasks", headers=CUSTOMER, params=params)

    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["errors"][0]["field"] == next(iter(params))
    assert batch.calls == []


def test_cancel_answers_the_batch_object(client: TestClient, batch: FakeBatch) -> None:
    response = client.post(f"{BATCH_URL}/cancel", headers=CUSTOMER)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == BATCH_FIELDS
    assert (body["status"], body["cancelled_count"], body["pending_count"]) == ("cancelled", 1, 0)
    assert body["finished_at"] == "2026-01-20T10:05:00Z"
    assert batch.requests("CancelBatch")[0].tenant_id == TENANT_ID


def test_batch_list_pages_the_tenants_batches(client: TestClient, batch: FakeBatch) -> None:
    response = client.get(
        "/api/enterprise/video-batch", headers=CUSTOMER, params={"status": "processing", "cursor": "c1"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] == "cursor-2"
    assert [set(item) for item in body["items"]] == [BATCH_FIELDS]
    [sent] = batch.requests("ListBatches")
    assert (sent.tenant_id, sent.status, sent.cursor, sent.limit) == (TENANT_ID, "processing", "c1", 50)


def test_credits_show_available_and_held(client: TestClient, billing: FakeBilling) -> None:
    response = client.get("/api/enterprise/credits", headers=CUSTOMER)

    assert response.status_code == 200
    assert response.json() == {"available_credits": 4980, "held_credits": 20, "debt_credits": 0}
    assert billing.requests("GetBalance")[0].tenant_id == TENANT_ID


def test_ledger_shows_deltas_of_the_available_balance(client: TestClient, billing: FakeBilling) -> None:
    billing.ledger = [
        billing_pb2.LedgerEntry(
            entry_id="e2",
            ref_type="batch_upfront",
            ref_id=BATCH_ID,
            batch_id=BATCH_ID,
            credits_delta=-20,
            balance_after=4980,
            created_at=timestamp(CREATED_AT),
            ledger_transfer_id=transfer_id(f"batch_upfront:{BATCH_ID}"),
        ),
        billing_pb2.LedgerEntry(
            entry_id="e1",
            ref_type="topup",
            ref_id="welcome-grant",
            credits_delta=5000,
            balance_after=5000,
            created_at=timestamp(CREATED_AT.replace(hour=9)),
            ledger_transfer_id=transfer_id(f"topup:{TENANT_ID}:welcome-grant"),
        ),
    ]

    response = client.get("/api/enterprise/ledger", headers=CUSTOMER, params={"batch_id": BATCH_ID.upper()})

    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {
                "entry_id": "e2",
                "ref_type": "batch_upfront",
                "ref_id": BATCH_ID,
                "batch_id": BATCH_ID,
                "credits_delta": -20,
                "balance_after": 4980,
                "created_at": "2026-01-20T10:00:00Z",
                "ledger_transfer_id": transfer_id(f"batch_upfront:{BATCH_ID}"),
            },
            {
                "entry_id": "e1",
                "ref_type": "topup",
                "ref_id": "welcome-grant",
                "batch_id": None,
                "credits_delta": 5000,
                "balance_after": 5000,
                "created_at": "2026-01-20T09:00:00Z",
                "ledger_transfer_id": transfer_id(f"topup:{TENANT_ID}:welcome-grant"),
            },
        ],
        "next_cursor": None,
    }
    [sent] = billing.requests("ListLedgerEntries")
    assert (sent.tenant_id, sent.batch_id, sent.limit) == (TENANT_ID, BATCH_ID, 50)


def test_ledger_filter_with_a_malformed_batch_id_is_422(client: TestClient, billing: FakeBilling) -> None:
    response = client.get("/api/enterprise/ledger", headers=CUSTOMER, params={"batch_id": "x"})

    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert billing.requests("ListLedgerEntries") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", BATCH_URL),
        ("GET", f"{BATCH_URL}/tasks"),
        ("POST", f"{BATCH_URL}/cancel"),
        ("GET", "/api/enterprise/video-batch"),
        ("GET", "/api/enterprise/credits"),
        ("GET", "/api/enterprise/ledger"),
    ],
)
def test_every_customer_read_requires_an_api_key(
    client: TestClient, batch: FakeBatch, billing: FakeBilling, method: str, path: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")
    assert batch.calls == []
    assert billing.calls == []


def test_every_backend_call_carries_the_configured_deadline(
    client: TestClient, settings: Settings, batch: FakeBatch, billing: FakeBilling
) -> None:
    client.get(BATCH_URL, headers=CUSTOMER)
    client.get(f"{BATCH_URL}/tasks", headers=CUSTOMER)
    client.get("/api/enterprise/ledger", headers=CUSTOMER)
    client.get("/api/enterprise/credits", headers=CUSTOMER)
    client.post(
        "/api/enterprise/video-batch", json={"items": [{"prompt": "a", "model": "sora-2"}]}, headers=CUSTOMER
    )

    timeouts = {timeout for _, _, timeout in [*batch.calls, *billing.calls]}
    assert len(batch.calls) + len(billing.calls) >= 5
    assert timeouts == {settings.grpc_deadline_seconds}


@pytest.mark.parametrize(
    "finished",
    [
        None,
        datetime(2026, 1, 20, 10, 5, 7, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
    ids=["unfinished", "microseconds", "whole second"],
)
def test_reads_answer_exactly_the_json_of_their_models(finished: datetime | None) -> None:
    """The hot reads serialize `fields_of` themselves: byte for byte what the models would send."""
    batch = batch_pb2.Batch(
        batch_id=BATCH_ID,
        status="partial",
        total_count=3,
        success_count=1,
        failed_count=1,
        cancelled_count=1,
        frozen_credits=30,
        credits_spent=10,
        refunded_credits=20,
        settlement_status="refunded",
        created_at=timestamp(CREATED_AT.replace(microsecond=1)),
        webhook_url="https://customer.example/hook" if finished else "",
    )
    task = batch_pb2.Task(
        task_id=TASK_ID,
        batch_index=7,
        status="failed" if finished else "queued",
        model="sora-2",
        prompt='Ünïcode "quoted" prompt\n',
        error_message="timed out" if finished else "",
        failure_type="timeout" if finished else "",
        attempts=3,
    )
    if finished is not None:
        batch.finished_at.CopyFrom(timestamp(finished))
        task.finished_at.CopyFrom(timestamp(finished))

    assert json_bytes(BatchView.fields_of(batch)) == BatchView.from_proto(batch).model_dump_json().encode()
    assert json_bytes(TaskView.fields_of(task)) == TaskView.from_proto(task).model_dump_json().encode()
    # The admin list answers its views' fields the same way (ADR-164).
    batch.tenant_id, batch.request_id = TENANT_ID, "request-1" if finished else ""
    assert (
        json_bytes(AdminBatchView.fields_of(batch))
        == AdminBatchView.from_proto(batch).model_dump_json().encode()
    )


def test_every_link_of_a_tasks_page_is_signed_for_the_caller_and_verifies(
    client: TestClient, batch: FakeBatch, settings: Settings
) -> None:
    batch.tasks = [
        batch_pb2.Task(
            task_id=f"b3c1d9a0-0000-4000-8000-00000000000{index}",
            batch_id=BATCH_ID,
            batch_index=index,
            status="succeeded" if index % 2 == 0 else "failed",
            video_url=f"http://127.0.0.1:8000/videos/{BATCH_ID}/{index}.mp4" if index % 2 == 0 else "",
        )
        for index in range(6)
    ]

    items = client.get(f"{BATCH_URL}/tasks", headers=CUSTOMER).json()["items"]

    links = video_links(settings)
    for item in items:
        if item["status"] == "failed":
            assert item["video_url"] is None
            continue
        path, _, query = item["video_url"].removeprefix(settings.public_base_url).partition("?")
        assert path == f"/videos/{BATCH_ID}/{item['task_id']}.mp4"
        grant = links.verify(BATCH_ID, item["task_id"], dict(part.split("=", 1) for part in query.split("&")))
        assert (grant.tenant_id, grant.key_id, grant.mode) == (TENANT_ID, KEY_ID, VideoMode.DOWNLOAD)
