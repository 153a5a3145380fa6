"""Drain on shutdown (issue 27 item 6, ADR-139): SIGTERM to a worker holding 100 running tasks,
and to a webhook process holding 100 deliveries in flight. What cannot finish within the grace
period is handed back at once, and another process takes it over within seconds, long before
its lease would have expired; every task and every message still ends exactly once.

Real processes, PostgreSQL and RabbitMQ. About 25 s each (the worker's drain alone is 10 s).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from libs.rpc.server import DRAIN_NOTICE_SECONDS
from libs.service_process import BACKEND_GRACE_SECONDS
from services.batch.entrypoints.worker import DRAIN_GRACE_SECONDS, HAND_BACK_ACK_SECONDS, LOOP_STOP_SECONDS
from services.batch.use_cases.execution import HAND_BACK_UNWIND_SECONDS
from tests.invariants import check_invariants, wait_for_all_settled
from tests.rest_api import Api
from tests.stack import Stack, free_port, fresh_stack, spawn

TASKS = 100
LEASE_SECONDS = 60.0
# Taken over "well before the lease": a handed-back task or message is claimed again this soon.
TAKEN_OVER_WITHIN_SECONDS = 5.0


def _dsn(stack: Stack) -> str:
    return stack.database_url.replace("postgresql+psycopg://", "postgresql://")


def _wait_for(
    condition: Callable[[], bool], timeout: float, what: str, state: Callable[[], object] = lambda: ""
) -> float:
    """Polls `condition` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s {state()}")
        time.sleep(0.05)
    return time.monotonic()


def _tasks_of(stack: Stack, pid: int) -> dict[str, int]:
    """Tasks last claimed by process `pid`, by status."""
    with psycopg.connect(_dsn(stack)) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM batch.tasks WHERE claimed_by LIKE %s GROUP BY status",
            (f"%:{pid}:%",),
        ).fetchall()
    return {str(status): int(count) for status, count in rows}


def test_a_stopped_worker_hands_back_its_100_running_tasks_for_another_to_claim_at_once(
    tmp_path: Path,
) -> None:
    overrides = {
        # The first worker's provider takes two minutes a video: nothing finishes in its drain.
        "REELBATCH_SIMULATED_LATENCY_SECONDS": "120",
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "300",
        "REELBATCH_TASK_LEASE_SECONDS": str(LEASE_SECONDS),
        "REELBATCH_METRICS_PORT": "0",
    }
    with fresh_stack(tmp_path, overrides, workers=0) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=10 * TASKS)
        stack.start("worker-0")
        slow = stack.processes["worker-0"]
        created = api.create_batch(
            customer, [{"prompt": f"shot {n}", "model": "sora-2"} for n in range(TASKS)]
        )
        assert created.status_code == 202, created.text
        batch_id = created.json()["batch_id"]
        _wait_for(lambda: _tasks_of(stack, slow.pid).get("running") == TASKS, 60, "100 tasks running")

        # A second worker with a fast provider; it is up long before the first one's drain ends.
        fast_env = {**stack.env, "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.05"}
        stack.processes["worker-1"] = spawn(stack.workdir, "worker-1", ["worker"], fast_env)
        fast = stack.processes["worker-1"]
        stopping_at = time.monotonic()
        returncode = stack.stop("worker-0", timeout=60)
        stopped_at = time.monotonic()
        taken_over_at = _wait_for(
            lambda: sum(_tasks_of(stack, fast.pid).values()) == TASKS, 30, "every task claimed by worker-1"
        )

        drain = stopped_at - stopping_at
        taken_over = taken_over_at - stopped_at
        print(
            f"\nworker stopped {drain:.1f}s after SIGTERM; "
            f"its {TASKS} tasks all re-claimed {taken_over:.2f}s later"
        )
        assert returncode == 0, stack.log("worker-0")
        assert (
            drain
            <= DRAIN_GRACE_SECONDS + HAND_BACK_UNWIND_SECONDS + HAND_BACK_ACK_SECONDS + LOOP_STOP_SECONDS
        )
        assert taken_over < TAKEN_OVER_WITHIN_SECONDS < LEASE_SECONDS, "a task waited for its lease"
        assert f"{TASKS} handed back" in stack.log("worker-0")

        batch = api.wait_until_settled(customer, batch_id, timeout=60)
        assert (batch["status"], batch["success_count"]) == ("completed", TASKS)
        with psycopg.connect(_dsn(stack)) as conn:
            claims = conn.execute(
                "SELECT claims, handbacks, count(*) FROM batch.tasks WHERE batch_id = %s GROUP BY 1, 2",
                (batch_id,),
            ).fetchall()
        # Claimed twice, handed back once: the hand-back is not counted as a lost claim.
        assert claims == [(2, 1, TASKS)]
        wait_for_all_settled(stack.database_url)
        check_invariants(stack.database_url).assert_clean()


@dataclass
class HoldingReceiver:
    """Records every webhook request; the first request of each message is held until its event
    type's gate opens (the test opens `batch.queued` during the drain), later ones answer at once."""

    gates: dict[str, threading.Event] = field(
        default_factory=lambda: {"batch.queued": threading.Event(), "batch.completed": threading.Event()}
    )
    arrivals: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # id -> [(type, when)]
    holding: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arrive(self, webhook_id: str, event_type: str) -> bool:
        """Records a request; True when it is the message's first (to be held)."""
        with self.lock:
            seen = self.arrivals.setdefault(webhook_id, [])
            seen.append((event_type, time.monotonic()))
            if len(seen) == 1:
                self.holding += 1
            return len(seen) == 1

    def released(self) -> None:
        with self.lock:
            self.holding -= 1

    def open_all(self) -> None:
        for gate in self.gates.values():
            gate.set()


def _holding_handler(receiver: HoldingReceiver) -> type[BaseHTTPRequestHandler]:
    class Holding(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            event_type = json.loads(body)["type"]
            first = receiver.arrive(self.headers["webhook-id"], event_type)
            try:
                if first:
                    receiver.gates[event_type].wait(120)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the deliverer gave this send up: the case under test
            finally:
                if first:
                    receiver.released()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Holding


class _WideServer(ThreadingHTTPServer):
    # 100 deliveries connect at once: the default listen backlog (5) would drop their SYNs, and
    # the kernel's SYN retransmits (1 s, 3 s, 7 s) would be measured as the deliverer's delay.
    request_queue_size = 256


@pytest.fixture
def holding_receiver() -> Iterator[tuple[str, HoldingReceiver]]:
    state = HoldingReceiver()
    server = _WideServer(("127.0.0.1", 0), _holding_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", state
    finally:
        state.open_all()
        server.shutdown()
        server.server_close()


def _message_states(stack: Stack) -> dict[str, tuple[str, str, int]]:
    """webhook-id -> (event type, status, attempts recorded)."""
    with psycopg.connect(_dsn(stack)) as conn:
        rows = conn.execute(
            "SELECT m.id, m.event_type, m.status,"
            " (SELECT count(*) FROM webhook.attempts a WHERE a.message_id = m.id) FROM webhook.messages m"
        ).fetchall()
    return {str(row[0]): (str(row[1]), str(row[2]), int(row[3])) for row in rows}


def test_a_stopped_deliverer_finishes_or_releases_its_100_deliveries_in_flight(
    tmp_path: Path, holding_receiver: tuple[str, HoldingReceiver]
) -> None:
    url, receiver = holding_receiver
    overrides = {
        "REELBATCH_WEBHOOK_CONCURRENCY": "128",
        "REELBATCH_WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS),
        "REELBATCH_WEBHOOK_POLL_SECONDS": "0.05",
        "REELBATCH_WEBHOOK_TIMEOUT_SECONDS": "120",
        "REELBATCH_WEBHOOK_RETRY_JITTER": "0",
        "REELBATCH_METRICS_PORT": "0",
    }
    batches = TASKS // 2  # batch.queued and batch.completed each
    with fresh_stack(tmp_path, overrides, workers=1) as stack:
        api = Api(stack.base_url)
        customer = api.new_customer(credits=10 * batches)
        for index in range(batches):
            created = api.http.post(
                "/api/enterprise/video-batch",
                json={"items": [{"prompt": f"shot {index}", "model": "sora-2"}], "webhook_url": url},
                headers=customer.headers,
            )
            assert created.status_code == 202, created.text
        _wait_for(lambda: receiver.holding == TASKS, 60, "100 deliveries in flight")

        # A second webhook process; the first one's 100 messages are leased, so it sends nothing.
        listen = f"127.0.0.1:{free_port()}"
        second_env = {**stack.env, "REELBATCH_WEBHOOK_GRPC_LISTEN": listen}
        stack.processes["webhook-2"] = spawn(stack.workdir, "webhook-2", ["serve", "webhook"], second_env)
        _wait_for(lambda: _accepts(listen), 60, "webhook-2 listening")
        # batch.queued deliveries are answered 2 s into the drain: they finish within the grace.
        threading.Timer(2.0, receiver.gates["batch.queued"].set).start()
        stopping_at = time.monotonic()
        returncode = stack.stop("webhook", timeout=60)
        stopped_at = time.monotonic()
        _wait_for(
            lambda: [status for _, status, _ in _message_states(stack).values()] == ["delivered"] * TASKS,
            30,
            "every message delivered",
            lambda: (Counter(_message_states(stack).values()), _attempt_errors(stack)),
        )

        drain = stopped_at - stopping_at
        assert returncode == 0, stack.log("webhook")
        assert drain <= BACKEND_GRACE_SECONDS + DRAIN_NOTICE_SECONDS + 5
        with receiver.lock:
            arrivals = {webhook_id: list(seen) for webhook_id, seen in receiver.arrivals.items()}
        assert len(arrivals) == TASKS
        finished = {i for i, seen in arrivals.items() if seen[0][0] == "batch.queued"}
        released = {i for i, seen in arrivals.items() if seen[0][0] == "batch.completed"}
        # Finished within the grace period: sent once.
        assert all(len(arrivals[i]) == 1 for i in finished) and len(finished) == batches
        # Released: sent again by the other deliverer at once, same webhook-id, not after the lease.
        assert all(len(arrivals[i]) == 2 for i in released) and len(released) == batches
        taken_over = max(arrivals[i][1][1] for i in released) - stopped_at
        print(
            f"\nwebhook process stopped {drain:.1f}s after SIGTERM; {len(finished)} sends finished in the "
            f"drain, {len(released)} released and all sent again {taken_over:.2f}s after it stopped"
        )
        assert taken_over < TAKEN_OVER_WITHIN_SECONDS < LEASE_SECONDS, "a message waited for its lease"
        # The cut-off send recorded no attempt: each message has exactly its one delivered attempt.
        assert {attempts for _, _, attempts in _message_states(stack).values()} == {1}
        wait_for_all_settled(stack.database_url)


def _attempt_errors(stack: Stack) -> list[Any]:
    with psycopg.connect(_dsn(stack)) as conn:
        return conn.execute(
            "SELECT error_class, http_status, response_body, duration_ms FROM webhook.attempts"
            " WHERE error_class <> '' LIMIT 5"
        ).fetchall()


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return False
    return True
