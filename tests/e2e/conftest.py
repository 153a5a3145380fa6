"""End-to-end fixtures: the whole system, driven through REST, in both ways it runs.

`distributed`: every service its own OS process on a fresh database and vhost (PostgreSQL and
RabbitMQ). `embedded`: one `reelbatch run` process on its own embedded PostgreSQL and the Postgres
bus, in a temporary folder with no database or broker URL. Every test runs against both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.embedded_stack import EmbeddedStack
from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack
from tests.stack_protocol import RunningStack


def _distributed(workdir: Path) -> Iterator[Stack]:
    """The system on its own database and vhost, so no other test's consumers share its queues."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(database_url, amqp_url, workdir, migrated=True)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
        _assert_stopped_cleanly(codes, running.log)


def _embedded(workdir: Path) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(workdir)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        _assert_stopped_cleanly(codes, running.log)


def _assert_stopped_cleanly(codes: dict[str, int], log: Callable[[str], str]) -> None:
    unclean = {name: code for name, code in codes.items() if code not in (0, -9)}
    assert not unclean, f"processes did not stop cleanly: {unclean}\n" + "\n".join(
        log(name) for name in unclean
    )


@pytest.fixture(scope="package", params=["distributed", "embedded"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The running system, once per way of running it."""
    workdir = Path(tmp_path_factory.mktemp(f"stack-{request.param}"))
    if request.param == "embedded":
        yield from _embedded(workdir)
    else:
        yield from _distributed(workdir)


@pytest.fixture(scope="package")
def api(stack: RunningStack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


@pytest.fixture(autouse=True)
def money_invariants_hold_afterwards(stack: RunningStack) -> Iterator[None]:
    """After every end-to-end test: all batches settle and I1-I5 hold over the whole database."""
    yield
    wait_for_all_settled(stack.database_url)


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A local HTTP receiver of webhooks: its URL and every (headers, body) it got, in order."""
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/reelbatch", received
    server.shutdown()
    server.server_close()
