"""Chaos rounds: a 300-item batch per round while a random process is SIGKILLed and restarted.

One round restarts PostgreSQL; a separate test restarts RabbitMQ. After every round each task is terminal and
the money invariants I1-I5 hold. The random seed is printed; replay a failure with
REELBATCH_CHAOS_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack

ROUNDS = 7
ITEMS = 300
POSTGRES_ROUND = 4


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    stack = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("chaos-rounds")),
        overrides={
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.05",
            "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "2",
            "REELBATCH_TASK_LEASE_SECONDS": "2",
            "REELBATCH_RECOVERY_INTERVAL_SECONDS": "0.3",
            "REELBATCH_OUTBOX_POLL_SECONDS": "0.3",
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


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _wait_until_postgres_answers(database_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(_libpq(database_url), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _restart_postgres(database_url: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    subprocess.run([*command, "stop", "-m", "immediate"], check=True, capture_output=True)
    subprocess.run([*command, "start"], check=True, capture_output=True)
    _wait_until_postgres_answers(database_url)


def _restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True)


def _restart_the_dead(stack: Stack) -> None:
    """Restarts processes that exited on their own; the batch service and workers never may."""
    dead = [name for name, process in stack.processes.items() if process.poll() is not None]
    ours = [name for name in dead if name == "batch" or name.startswith("worker")]
    assert not ours, f"{ours} exited during the outage:\n" + "\n".join(stack.log(n) for n in ours)
    for name in dead:
        print(f"  {name} exited during the outage; restarting it")
        stack.start(name)


def _items(rng: random.Random) -> list[dict[str, str]]:
    items = []
    for n in range(ITEMS):
        marker = rng.choice(["", "", "", "", " #fail", " #flaky"])
        items.append({"prompt": f"round take {n}{marker}", "model": "sora-2"})
    return items


def test_random_crashes_and_restarts_lose_no_task_and_break_no_invariant(chaos_stack: Stack) -> None:
    seed = int(os.environ.get("REELBATCH_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"chaos seed: {seed} (replay with REELBATCH_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    api = Api(chaos_stack.base_url)
    customer = api.new_customer(credits=ROUNDS * ITEMS * 10)
    victims = [name for name in chaos_stack.processes if name != "gateway"] + ["gateway"]
    for round_number in range(ROUNDS):
        items = _items(rng)
        created = api.create_batch(customer, items, request_id=f"chaos-{seed}-{round_number}")
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        # Random moments inside the batch's run (injection timing, not waiting for a condition).
        time.sleep(rng.uniform(0.0, 1.0))
        if round_number == POSTGRES_ROUND:
            action = "restart postgresql"
            _restart_postgres(chaos_stack.database_url)
        else:
            victim = rng.choice(victims)
            action = f"kill -9 {victim}"
            chaos_stack.kill(victim)
            time.sleep(rng.uniform(0.0, 0.5))
            chaos_stack.start(victim)
        print(f"round {round_number}: {action}")
        _restart_the_dead(chaos_stack)
        chaos_stack.wait_ready()
        batch = api.wait_until_settled(customer, batch_id, timeout=90)
        assert batch["pending_count"] == 0, (round_number, action, batch)
        assert batch["success_count"] + batch["failed_count"] + batch["cancelled_count"] == ITEMS
        failures = sum(1 for item in items if "#fail" in item["prompt"])
        # #fail is refused at once; a lost task (three dead workers in a row) could fail more.
        assert batch["failed_count"] >= failures, (round_number, action, batch)
        wait_for_all_settled(chaos_stack.database_url)


def test_a_rabbitmq_restart_mid_batch_loses_no_task_and_breaks_no_invariant(chaos_stack: Stack) -> None:
    api = Api(chaos_stack.base_url)
    customer = api.new_customer(credits=ITEMS * 10)
    created = api.create_batch(customer, _items(random.Random(7)))
    assert created.status_code == 202, created.text
    _restart_rabbitmq()
    _restart_the_dead(chaos_stack)
    chaos_stack.wait_ready()
    batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=30)
    assert batch["pending_count"] == 0
    wait_for_all_settled(chaos_stack.database_url)


def test_a_worker_started_while_the_broker_is_down_waits_for_it_and_then_works(chaos_stack: Stack) -> None:
    chaos_stack.stop("worker-0")
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
    try:
        chaos_stack.start("worker-0")
        # Long enough for the process to boot and fail its first connection attempts.
        time.sleep(3)
        assert chaos_stack.processes["worker-0"].poll() is None, chaos_stack.log("worker-0")
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True)
    _restart_the_dead(chaos_stack)
    chaos_stack.wait_ready()
    api = Api(chaos_stack.base_url)
    customer = api.new_customer(credits=ITEMS * 10)
    created = api.create_batch(customer, _items(random.Random(11)))
    assert created.status_code == 202, created.text
    batch = api.wait_until_settled(customer, created.json()["batch_id"], timeout=60)
    assert batch["pending_count"] == 0
    assert chaos_stack.processes["worker-0"].poll() is None
    wait_for_all_settled(chaos_stack.database_url)
