"""Chaos: processes die with SIGKILL mid-batch; once they are back, every task ends and I1-I5 hold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose tasks take long enough to be caught in flight."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    stack = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("chaos")),
        overrides={
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.3",
            "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "5",
            "REELBATCH_WORKER_CONCURRENCY": "8",
            "REELBATCH_TASK_LEASE_SECONDS": "2",
        },
        migrated=True,
    )
    try:
        stack.start_all()
        yield stack
    finally:
        stack.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


def _task_counts(stack: Stack, batch_id: str) -> dict[str, int]:
    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM batch.tasks WHERE batch_id = %s GROUP BY status", (batch_id,)
        ).fetchall()
    return {status: count for status, count in rows}


def _wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_loses_no_task_and_charges_nothing_twice(slow_stack: Stack) -> None:
    api = Api(slow_stack.base_url)
    customer = api.new_customer(credits=2000)
    items = [{"prompt": f"long take {i}", "model": "sora-2"} for i in range(100)]
    created = api.create_batch(customer, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    _wait_for(lambda: _task_counts(slow_stack, batch_id).get("running", 0) >= 8)

    slow_stack.kill("worker-0")
    slow_stack.start("worker-0")

    batch = api.wait_until_settled(customer, batch_id, timeout=90)
    assert (batch["status"], batch["success_count"], batch["pending_count"]) == ("completed", 100, 0)
    assert api.credits(customer) == {"available_credits": 1000, "held_credits": 0, "debt_credits": 0}
    wait_for_all_settled(slow_stack.database_url)


def test_billing_killed_while_outcomes_flow_settles_everything_once_it_is_back(slow_stack: Stack) -> None:
    api = Api(slow_stack.base_url)
    customer = api.new_customer(credits=1000)
    items = [
        {"prompt": f"take {i}" + (" #fail" if i % 10 == 0 else ""), "model": "sora-2"} for i in range(50)
    ]
    created = api.create_batch(customer, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    _wait_for(lambda: _task_counts(slow_stack, batch_id).get("succeeded", 0) >= 5)

    slow_stack.kill("billing")
    _wait_for(
        lambda: sum(_task_counts(slow_stack, batch_id).get(s, 0) for s in ("succeeded", "failed")) == 50, 60
    )
    slow_stack.start("billing")
    slow_stack.wait_ready()

    batch = api.wait_until_settled(customer, batch_id, timeout=90)
    assert (batch["status"], batch["success_count"], batch["failed_count"]) == ("partial", 45, 5)
    assert (batch["credits_spent"], batch["refunded_credits"], batch["settlement_status"]) == (
        450,
        50,
        "refunded",
    )
    assert api.credits(customer) == {"available_credits": 550, "held_credits": 0, "debt_credits": 0}
    wait_for_all_settled(slow_stack.database_url)


def test_the_batch_service_killed_mid_batch_resumes_and_settles(slow_stack: Stack) -> None:
    api = Api(slow_stack.base_url)
    customer = api.new_customer(credits=1000)
    created = api.create_batch(customer, [{"prompt": f"scene {i}", "model": "sora-2"} for i in range(40)])
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]

    slow_stack.kill("batch")
    unavailable = api.http.get(f"/api/enterprise/video-batch/{batch_id}", headers=customer.headers)
    assert unavailable.status_code == 503
    assert unavailable.headers.get("Retry-After")
    slow_stack.start("batch")
    slow_stack.wait_ready()

    batch = api.wait_until_settled(customer, batch_id, timeout=90)
    assert (batch["status"], batch["success_count"]) == ("completed", 40)
    assert api.credits(customer) == {"available_credits": 600, "held_credits": 0, "debt_credits": 0}
    wait_for_all_settled(slow_stack.database_url)
