"""Chaos: the webhook process dies with SIGKILL while deliveries are in flight.

Once it is back, every expected message arrives, and a message sent again keeps its `webhook-id`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.invariants import check_invariants, wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack

HOLD_SECONDS = 1.0
BATCHES = 8


@dataclass
class SlowReceiver:
    """Records each request on arrival, then holds it HOLD_SECONDS before answering 200."""

    received: list[tuple[str, str, str]] = field(default_factory=list)  # (webhook-id, type, batch_id)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arrived(self, webhook_id: str, body: bytes) -> None:
        payload = json.loads(body)
        with self.lock:
            self.received.append((webhook_id, payload["type"], payload["data"]["batch_id"]))
            self.in_flight += 1

    def answered(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _handler_for(receiver: SlowReceiver) -> type[BaseHTTPRequestHandler]:
    class Holding(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.arrived(self.headers["webhook-id"], body)
            try:
                # Holding the answer keeps the delivery in flight when the deliverer is killed.
                threading.Event().wait(HOLD_SECONDS)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the deliverer died while we held its request: exactly the case under test
            finally:
                receiver.answered()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Holding


@pytest.fixture
def receiver() -> Iterator[tuple[str, SlowReceiver]]:
    state = SlowReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks", state
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_stack(tmp_path: Path) -> Iterator[Stack]:
    """One worker, and a short webhook lease so a killed deliverer's messages come due quickly."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    stack = Stack(
        database_url,
        amqp_url,
        tmp_path,
        workers=1,
        overrides={
            "REELBATCH_WEBHOOK_LEASE_SECONDS": "2",
            "REELBATCH_WEBHOOK_POLL_SECONDS": "0.05",
            "REELBATCH_WEBHOOK_TIMEOUT_SECONDS": "5",
            "REELBATCH_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0, 0.2, 0.5, 1, 1]",
            "REELBATCH_WEBHOOK_RETRY_JITTER": "0",
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


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _stored_messages(stack: Stack) -> list[tuple[str, str, str, str]]:
    """(webhook-id, event type, batch id, status) of every message the webhook service recorded."""
    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, event_type, batch_id::text, status FROM webhook.messages").fetchall()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def test_webhook_process_killed_mid_delivery_loses_no_message_and_keeps_every_webhook_id(
    webhook_stack: Stack, receiver: tuple[str, SlowReceiver]
) -> None:
    url, state = receiver
    api = Api(webhook_stack.base_url)
    customer = api.new_customer(credits=1000)
    batch_ids: list[str] = []
    for index in range(BATCHES):
        created = api.http.post(
            "/api/enterprise/video-batch",
            json={"items": [{"prompt": f"shot {index}", "model": "sora-2"}], "webhook_url": url},
            headers=customer.headers,
        )
        assert created.status_code == 202, created.text
        batch_ids.append(created.json()["batch_id"])

    _wait_for(lambda: state.in_flight >= 3)
    webhook_stack.kill("webhook")
    killed_while_holding = state.in_flight
    webhook_stack.start("webhook")
    webhook_stack.wait_ready()

    expected = {
        (event_type, batch_id) for batch_id in batch_ids for event_type in ("batch.queued", "batch.completed")
    }
    _wait_for(
        lambda: {(t, b) for _, t, b, s in _stored_messages(webhook_stack) if s == "delivered"} == expected,
        timeout=30,
    )

    with state.lock:
        received = list(state.received)
    ids_by_event: dict[tuple[str, str], set[str]] = {}
    for webhook_id, event_type, batch_id in received:
        ids_by_event.setdefault((event_type, batch_id), set()).add(webhook_id)
    assert set(ids_by_event) == expected, "a message was lost"
    assert all(len(ids) == 1 for ids in ids_by_event.values()), f"delivered under two ids: {ids_by_event}"
    stored = _stored_messages(webhook_stack)
    assert len(stored) == len(expected), "an event was recorded as two messages"
    assert {m for ids in ids_by_event.values() for m in ids} == {m for m, _, _, _ in stored}
    # The kill really interrupted deliveries: those requests were sent again, same id.
    assert killed_while_holding >= 1
    assert len(received) > len(expected)

    for batch_id in batch_ids:
        assert api.batch(customer, batch_id)["status"] == "completed"
    wait_for_all_settled(webhook_stack.database_url)
    check_invariants(webhook_stack.database_url).assert_clean()
