"""Chaos in embedded mode: `kill -9` of the one process (and of its PostgreSQL) mid-batch loses nothing.

`reelbatch run` starts in a temporary folder with no database or broker URL, the seed demo runs
through HTTP, the process is SIGKILLed while the batch is half done, and after a restart every task
reaches a terminal state, the money adds up to the seed figures, and I1-I5 hold.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from tests.embedded_stack import EmbeddedStack
from tests.invariants import check_invariants, wait_for_all_settled
from tests.rest_api import Api, Customer

DEMO = Customer(tenant_id="demo", api_key="demo-key")
SEED_ITEMS = [
    {"prompt": f"seed demo shot {index}" + (" #fail" if index == 7 else ""), "model": "sora-2"}
    for index in range(20)
]


def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_embedded_mode_killed_mid_batch_finishes_the_seed_demo_after_a_restart(tmp_path: Path) -> None:
    stack = EmbeddedStack(
        tmp_path,
        overrides={
            # Slow enough to be caught mid-batch: four tasks at a time, a second each.
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "1.0",
            "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "5",
            "REELBATCH_DISPATCH_CHUNK_SIZE": "1",
            "REELBATCH_WORKER_PREFETCH": "2",
            "REELBATCH_WORKER_CONCURRENCY": "2",
            "REELBATCH_TASK_LEASE_SECONDS": "2",
        },
    )
    try:
        stack.start_all()
        api = Api(stack.base_url)
        request_id = f"demo-{uuid.uuid4().hex[:8]}"
        created = api.create_batch(DEMO, SEED_ITEMS, request_id=request_id)
        assert created.status_code == 202, created.text
        assert (created.json()["required_credits"], created.json()["available_credits"]) == (200, 5000)
        batch_id = created.json()["batch_id"]
        _wait_for(lambda: api.batch(DEMO, batch_id)["success_count"] >= 3, timeout=30)
        in_flight = api.batch(DEMO, batch_id)
        finished = in_flight["success_count"] + in_flight["failed_count"]
        assert finished < 20, "the batch finished before the crash; slow it down"

        # The whole machine goes down: the process and its database, with no cleanup at all.
        stack.kill()
        stack.kill_postgres()
        api.http.close()

        stack.start()
        stack.wait_ready()
        api = Api(stack.base_url)
        batch = api.wait_until_settled(DEMO, batch_id, timeout=90)
        assert (batch["status"], batch["success_count"], batch["failed_count"], batch["pending_count"]) == (
            "partial",
            19,
            1,
            0,
        )
        assert (batch["frozen_credits"], batch["credits_spent"], batch["refunded_credits"]) == (200, 190, 10)
        ledger = sorted((e["ref_type"], e["credits_delta"]) for e in api.ledger(DEMO, batch_id))
        assert ledger == [("batch_refund", 10), ("batch_upfront", -200)]
        assert api.credits(DEMO) == {"available_credits": 4810, "held_credits": 0, "debt_credits": 0}

        retried = api.create_batch(DEMO, SEED_ITEMS, request_id=request_id)
        assert retried.json()["batch_id"] == batch_id
        assert api.credits(DEMO)["available_credits"] == 4810

        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()
        api.http.close()
    finally:
        codes = stack.stop_all()
    assert codes == {"reelbatch": 0}, stack.log()
    assert stack.postmaster_pid() is None, "PostgreSQL outlived the stack"


def test_ctrl_c_stops_embedded_mode_with_its_database_within_five_seconds(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path)
    try:
        stack.start_all()
        postgres_pid = stack.postmaster_pid()
        assert postgres_pid is not None
        assert httpx.get(f"{stack.base_url}/readyz", timeout=5).status_code == 200
        started = time.monotonic()
        code = stack.stop()
        took = time.monotonic() - started
    finally:
        stack.stop_all()
    assert code == 0, stack.log()
    assert took < 5.0, f"took {took:.1f}s to stop"
    assert stack.postmaster_pid() is None
    assert "Reelbatch stopped (PostgreSQL included)." in stack.log()
