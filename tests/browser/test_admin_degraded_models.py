"""The admin overview's "Degraded models" banner (ADR-113) in real headless Chromium: a model whose
shared circuit breaker opened is shown degraded on /admin/batches, and the banner goes once a
probe succeeds.

The breaker is driven through the workers' own code (`ModelGate` over the breakers table), as a
provider outage would drive it, on the browser stack's database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from libs.db import Database
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.domain.breaker import BreakerPolicy
from services.batch.domain.provider import FailureType, ProviderFailure
from services.batch.use_cases.breakers import ModelGate
from tests.browser.test_admin_dashboard import DESKTOP, sign_in
from tests.stack import Stack

MODEL = "veo-3"
RULES = BreakerPolicy(failure_threshold=3, open_seconds=60, outage_limit_seconds=900, probe_seconds=60)
DOWN = ProviderFailure(FailureType.PROVIDER_ERROR, "503 Service Unavailable")


def _drive(database_url: str, failures: int, succeed: bool) -> None:
    """Records `failures` transient failures (and then a success) in the model's breaker. In a
    thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, _record(database_url, failures, succeed)).result()


async def _record(database_url: str, failures: int, succeed: bool) -> None:
    database = Database(database_url, pool_size=1)
    gate = ModelGate(ModelBreakers(database), MODEL, RULES)
    try:
        for _ in range(failures):
            await gate.failed(DOWN)
        if succeed:
            await gate.succeeded()
    finally:
        await database.close()


@pytest.fixture
def outage(stack: Stack) -> Iterator[None]:
    """The model's provider failed three times in a row: its breaker is open until the test ends."""
    _drive(stack.database_url, failures=RULES.failure_threshold, succeed=False)
    try:
        yield
    finally:
        # The other browser tests share this stack: the banner must not outlive this test.
        _drive(stack.database_url, failures=0, succeed=True)


def test_a_model_whose_breaker_is_open_is_shown_degraded_until_its_provider_answers_again(
    browser: Browser, stack: Stack, outage: None, artifacts: Path
) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, stack.base_url, "/admin/batches")

    banner = page.get_by_role("alert", name="Degraded models")
    expect(banner).to_be_visible()
    expect(banner.get_by_role("heading", name="Degraded models")).to_be_visible()
    item = banner.locator(f'li[data-model="{MODEL}"]')
    expect(item).to_have_count(1)
    expect(item).to_contain_text(f"{MODEL}: degraded (provider down)")
    expect(item).to_contain_text("3 failures in a row")
    page.screenshot(path=str(artifacts / "batches-degraded-desktop.png"), full_page=True)

    # The probe succeeds (the provider answers again): the breaker closes, the banner goes.
    _drive(stack.database_url, failures=0, succeed=True)
    page.reload()
    expect(page.get_by_role("heading", name="Batches", exact=True)).to_be_visible()
    expect(page.get_by_role("alert", name="Degraded models")).to_have_count(0)
    context.close()
