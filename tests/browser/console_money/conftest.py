"""Fixtures of the console's money and developer pages in Chromium: the whole system as processes
with a fake Stripe (following Stripe's API) and quick webhook retries, a seeded tenant, and its
console members (owner, developer, finance) signed in through the real forms."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.browser.console_money.seeding import ConsoleTenant, seed_tenant
from tests.fakes.stripe_checkout import FakeStripe, running_fake_stripe, stack_settings, webhook_url_of
from tests.invariants import wait_for_all_settled
from tests.rest_api import Api
from tests.stack import STRIPE_WEBHOOK_SECRET, Stack, fresh_stack


class SwitchableReceiver(BaseHTTPRequestHandler):
    """A customer's webhook endpoint that answers 500 with a body until told to accept."""

    accepting = False
    received: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        SwitchableReceiver.received.append(self.headers.get("webhook-id", ""))
        ok = SwitchableReceiver.accepting
        self.send_response(200 if ok else 500)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"receiver exploded: database locked")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="package")
def fake_stripe() -> Iterator[FakeStripe]:
    with running_fake_stripe(STRIPE_WEBHOOK_SECRET) as state:
        yield state


@pytest.fixture(scope="package")
def money_stack(tmp_path_factory: pytest.TempPathFactory, fake_stripe: FakeStripe) -> Iterator[Stack]:
    """The system on its own database and vhost, buying through the fake Stripe."""
    overrides = {
        **stack_settings(fake_stripe),
        # A failing endpoint gives up after two quick attempts (the timeline's "failed").
        "REELBATCH_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0.0, 0.2]",
        # Videos take a fifth of a second, two at a time: a batch is still open while a page
        # watches it (the overview's live progress).
        "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.2",
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "1.0",
        "REELBATCH_WORKER_CONCURRENCY": "2",
    }

    def send_payments_here(stack: Stack) -> None:
        fake_stripe.webhook_url = webhook_url_of(stack.base_url)

    with fresh_stack(
        Path(tmp_path_factory.mktemp("console-money")), overrides, before_start=send_payments_here
    ) as running:
        yield running


@pytest.fixture(scope="package")
def money_api(money_stack: Stack) -> Iterator[Api]:
    client = Api(money_stack.base_url)
    yield client
    client.http.close()


@pytest.fixture(autouse=True)
def money_invariants_hold_afterwards(money_stack: Stack) -> Iterator[None]:
    """After every test: all batches settle and I1-I6 hold over the whole database."""
    yield
    wait_for_all_settled(money_stack.database_url)


@pytest.fixture(scope="package")
def receiver_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SwitchableReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


@pytest.fixture(scope="package")
def tenant(money_api: Api, browser: Browser, money_stack: Stack) -> ConsoleTenant:
    return seed_tenant(money_api, money_stack.base_url)
