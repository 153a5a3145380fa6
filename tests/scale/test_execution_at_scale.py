"""Cancel mid-run, deadlines, retry-failed and a 10,000-item batch, through REST on the full stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api, Customer
from tests.stack import Stack

PRICE = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Slow enough batches to cancel mid-run, fast cancel checks and recovery."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("execution")),
        overrides={
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.4",
            "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "5",
            "REELBATCH_CANCEL_CHECK_SECONDS": "0.2",
            "REELBATCH_RECOVERY_INTERVAL_SECONDS": "0.3",
            # About 100 videos a second: batches last long enough to be cancelled or to time out.
            "REELBATCH_PRICING": json.dumps({"sora-2": {"credits_per_video": PRICE, "max_in_flight": 40}}),
        },
        migrated=True,
    )
    try:
        running.start_all()
        yield running
    finally:
        running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()
    wait_for_all_settled(stack.database_url)


def _create(api: Api, customer: Customer, body: dict[str, Any], request_id: str | None = None) -> Any:
    headers = dict(customer.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    return api.http.post("/api/enterprise/video-batch", json=body, headers=headers)


def _running(stack: Stack, batch_id: str) -> int:
    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND status = 'running'", (batch_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_cancel_mid_run_refunds_exactly_what_did_not_succeed(stack: Stack, api: Api) -> None:
    customer = api.new_customer(credits=5_000)
    items = [{"prompt": f"scene {n}", "model": "sora-2"} for n in range(300)]
    created = _create(api, customer, {"items": items})
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    _wait_for(lambda: api.batch(customer, batch_id)["success_count"] >= 5 and _running(stack, batch_id) > 0)

    cancelled = api.http.post(f"/api/enterprise/video-batch/{batch_id}/cancel", headers=customer.headers)
    assert cancelled.status_code == 200, cancelled.text
    batch = api.wait_until_settled(customer, batch_id, timeout=60)
    again = api.http.post(f"/api/enterprise/video-batch/{batch_id}/cancel", headers=customer.headers)

    succeeded, cancelled_count = batch["success_count"], batch["cancelled_count"]
    assert batch["status"] == "cancelled"
    assert succeeded + cancelled_count == 300 and batch["failed_count"] == 0
    assert 0 < succeeded < 300
    assert (batch["credits_spent"], batch["refunded_credits"]) == (PRICE * succeeded, PRICE * cancelled_count)
    assert batch["settlement_status"] == "refunded"
    assert api.credits(customer) == {
        "available_credits": 5_000 - PRICE * succeeded,
        "held_credits": 0,
        "debt_credits": 0,
    }
    assert again.status_code == 200 and again.json()["cancelled_count"] == cancelled_count
    messages = {
        task["error_message"] for task in api.tasks(customer, batch_id) if task["status"] == "cancelled"
    }
    assert messages <= {"cancelled before it started", "cancelled while running"}


def test_a_deadline_cancels_and_refunds_the_unfinished_tasks(stack: Stack, api: Api) -> None:
    customer = api.new_customer(credits=5_000)
    items = [{"prompt": f"take {n}", "model": "sora-2"} for n in range(400)]
    created = _create(api, customer, {"items": items, "deadline_seconds": 1})
    assert created.status_code == 202, created.text
    batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=60)
    assert batch["status"] == "cancelled"
    assert batch["success_count"] + batch["cancelled_count"] == 400
    assert batch["cancelled_count"] > 0
    assert batch["refunded_credits"] == PRICE * batch["cancelled_count"]


def test_an_out_of_range_deadline_is_a_validation_error(stack: Stack, api: Api) -> None:
    customer = api.new_customer(credits=100)
    items = [{"prompt": "x", "model": "sora-2"}]
    # 0 means no deadline, over REST as over gRPC (the batch service's one rule).
    for deadline in (-1, 7 * 24 * 3600 + 1):
        refused = _create(api, customer, {"items": items, "deadline_seconds": deadline})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
        assert [error["loc"] for error in refused.json()["error"]["errors"]] == [["deadline_seconds"]]


def test_retry_failed_charges_a_new_batch_for_the_failed_items_only(stack: Stack, api: Api) -> None:
    customer = api.new_customer(credits=1_000)
    items = [{"prompt": f"p{n}" + (" #fail" if n % 4 == 0 else ""), "model": "sora-2"} for n in range(12)]
    created = _create(api, customer, {"items": items})
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    retry_url = f"/api/enterprise/video-batch/{batch_id}/retry-failed"
    early = api.http.post(retry_url, headers={**customer.headers, "X-Request-ID": "early"})
    first = api.wait_until_settled(customer, batch_id)
    assert (first["failed_count"], first["refunded_credits"]) == (3, 30)

    # `#fail` is a content_policy refusal: not retried unless asked for (ADR-048).
    by_default = api.http.post(retry_url, headers=customer.headers)
    headers = {**customer.headers, "X-Request-ID": "retry-1"}
    asked = {"failure_types": ["content_policy"]}
    retried = api.http.post(retry_url, json=asked, headers=headers)
    replay = api.http.post(retry_url, json=asked, headers=headers)
    # A double click without any request id: the same retry, nothing frozen again.
    keyless = api.http.post(retry_url, json=asked, headers=customer.headers)
    assert retried.status_code == 202, retried.text
    retry_id = retried.json()["batch_id"]
    assert (retried.json()["total_count"], retried.json()["required_credits"]) == (3, 30)
    assert [
        (r.status_code, r.json()["batch_id"], r.headers.get("Idempotent-Replayed")) for r in (replay, keyless)
    ] == [(202, retry_id, "true")] * 2
    second = api.wait_until_settled(customer, retry_id)
    tasks = api.tasks(customer, retry_id)
    source = api.http.get(f"/api/enterprise/video-batch/{batch_id}", headers=customer.headers).json()

    assert early.status_code == 409 and early.json()["error"]["code"] == "batch_not_finished"
    assert by_default.status_code == 422 and by_default.json()["error"]["code"] == "validation_error"
    assert [task["status"] for task in tasks] == ["failed"] * 3
    assert (second["failed_count"], second["refunded_credits"], second["retry_of"]) == (3, 30, batch_id)
    assert (source["retry_of"], source["retries"]) == (None, [retry_id])
    assert api.credits(customer) == {"available_credits": 1_000 - 90, "held_credits": 0, "debt_credits": 0}
    completed = _create(api, customer, {"items": [{"prompt": "fine", "model": "sora-2"}]})
    api.wait_until_settled(customer, completed.json()["batch_id"])
    nothing = api.http.post(
        f"/api/enterprise/video-batch/{completed.json()['batch_id']}/retry-failed", headers=customer.headers
    )
    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "validation_error"


def test_a_ten_thousand_item_batch_runs_and_settles_with_zero_latency(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    big = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("ten-thousand")),
        overrides={"REELBATCH_SIMULATED_LATENCY_SECONDS": "0", "REELBATCH_OUTBOX_POLL_SECONDS": "0.2"},
        migrated=True,
    )
    try:
        big.start_all()
        api = Api(big.base_url)
        customer = api.new_customer(credits=100_000)
        items = [
            {"prompt": f"frame {n}" + (" #fail" if n % 100 == 0 else ""), "model": "sora-2"}
            for n in range(10_000)
        ]
        started = time.monotonic()
        created = _create(api, customer, {"items": items})
        assert created.status_code == 202, created.text
        batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=150)
        print(f"10,000-item batch settled in {time.monotonic() - started:.1f}s")
        assert (batch["status"], batch["success_count"], batch["failed_count"]) == ("partial", 9_900, 100)
        assert (batch["credits_spent"], batch["refunded_credits"]) == (99_000, 1_000)
        assert api.credits(customer) == {"available_credits": 1_000, "held_credits": 0, "debt_credits": 0}
        wait_for_all_settled(database_url)
    finally:
        big.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
