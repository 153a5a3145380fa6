"""A database blip is a retried 503, never a 500.

PostgreSQL ends every connection of the stack's database (`pg_terminate_backend`, what a failover
or an operator's restart of a pooler does) several times while customers create batches and read
them over REST. Every pooled connection dies at once, raw psycopg ones included; each fails at
most once, the gRPC channel retries the UNAVAILABLE it becomes, and the gateway answers 503 with
Retry-After when even that is not enough, never 500. Afterwards requests succeed, the background
loops (outbox relays, consumers, workers, recovery) have resumed by themselves, every batch
settles and the money invariants hold.

The stack has a database of its own, so ending its connections disturbs no other test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.invariants import wait_for_all_settled
from tests.isolation import (
    create_migrated_database,
    create_vhost,
    delete_vhost,
    drop_database,
    terminate_every_backend,
)
from tests.rest_api import Api, Customer
from tests.stack import ADMIN_TOKEN, Stack

CLIENTS = 4
BLIPS = 4
SECONDS_BETWEEN_BLIPS = 1.5


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    retry_after: str | None
    body: str


@pytest.fixture(scope="module")
def blip_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Stack]]:
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    stack = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("database-blips")),
        workers=1,
        overrides={"REELBATCH_OUTBOX_POLL_SECONDS": "0.3"},
        migrated=True,
    )
    try:
        stack.start_all()
        yield db_name, stack
    finally:
        stack.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


class Customers:
    """A customer's bounded loop of creates and reads, recording every answer."""

    def __init__(
        self, base_url: str, customer: Customer, answers: list[Answer], lock: threading.Lock
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._customer = customer
        self._answers = answers
        self._lock = lock

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        template = path.split("?")[0]
        with self._lock:
            self._answers.append(
                Answer(
                    method,
                    template,
                    response.status_code,
                    response.headers.get("retry-after"),
                    response.text[:300],
                )
            )
        return response

    def run(self, stop: threading.Event) -> None:
        headers = self._customer.headers
        try:
            while not stop.is_set():
                created = self._call(
                    "POST",
                    "/api/enterprise/video-batch",
                    json={
                        "items": [
                            {"prompt": "a cat", "model": "sora-2"},
                            {"prompt": "#fail", "model": "sora-2"},
                        ]
                    },
                    headers={**headers, "X-Request-ID": str(uuid.uuid4())},
                )
                if created.status_code == 202:
                    batch_id = created.json()["batch_id"]
                    self._call("GET", f"/api/enterprise/video-batch/{batch_id}", headers=headers)
                    self._call("GET", f"/api/enterprise/video-batch/{batch_id}/tasks", headers=headers)
                self._call("GET", "/api/enterprise/credits", headers=headers)
                self._call("GET", "/api/enterprise/ledger", headers=headers)
                self._call(
                    "POST",
                    f"/api/admin/tenants/{self._customer.tenant_id}/credits",
                    json={"credits": 1, "reference": f"payment-{uuid.uuid4()}"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
        finally:
            self._http.close()


def _server_errors(answers: list[Answer]) -> list[Answer]:
    """Answers a client must not see: any 5xx but a 503 that says when to come back."""
    return [a for a in answers if a.status >= 500 and not (a.status == 503 and a.retry_after)]


def test_terminating_every_database_connection_mid_load_never_answers_500(
    blip_stack: tuple[str, Stack],
) -> None:
    db_name, stack = blip_stack
    api = Api(stack.base_url)
    customers = [api.new_customer(credits=1_000_000) for _ in range(CLIENTS)]
    answers: list[Answer] = []
    lock = threading.Lock()
    stop = threading.Event()
    loops = [
        threading.Thread(target=Customers(stack.base_url, customer, answers, lock).run, args=(stop,))
        for customer in customers
    ]
    for loop in loops:
        loop.start()
    ended: list[int] = []
    try:
        for _ in range(BLIPS):
            stop.wait(SECONDS_BETWEEN_BLIPS)
            ended.append(terminate_every_backend(db_name))
        stop.wait(SECONDS_BETWEEN_BLIPS)
    finally:
        stop.set()
        for loop in loops:
            loop.join(60)
    assert all(count > 0 for count in ended), f"no connection to end in some blip: {ended}"
    assert len(answers) > 50, f"too little load to mean anything: {len(answers)} answers"
    bad = _server_errors(answers)
    assert not bad, f"{len(bad)} of {len(answers)} answers were server errors, e.g. {bad[:5]}"

    # After the blips the system works again by itself: a new batch is accepted and settles.
    customer = customers[0]
    created = api.create_batch(customer, [{"prompt": "after the blips", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    settled = api.wait_until_settled(customer, created.json()["batch_id"], timeout=30)
    assert settled["status"] == "completed"
    wait_for_all_settled(stack.database_url, timeout=30)
    exited = {name: p.returncode for name, p in stack.processes.items() if p.poll() is not None}
    assert not exited, f"processes exited: {exited}"
    api.http.close()
