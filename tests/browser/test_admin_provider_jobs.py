"""The admin batch page's provider jobs (issue 26 item 2, ADR-144) in real headless Chromium, on a
whole system whose model renders at a fake Replicate: per task its attempts, the provider's job
ids, statuses and costs, a failed job billed where the provider bills failures, and the overview's
margin on that real spend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_admin_dashboard import DESKTOP, sign_in, stat
from tests.fakes.provider_state import FakeProvider, Scenario
from tests.invariants import wait_for_all_settled
from tests.provider_jobs_stack import JOB_COST_USD_MICROS, MODEL, fake_replicate, provider_overrides
from tests.rest_api import Api
from tests.stack import Stack, fresh_stack

RETRIED = "a lighthouse at dusk, take 1"


@pytest.fixture(scope="module")
def replicate() -> Iterator[FakeProvider]:
    with fake_replicate() as fake:
        yield fake


@pytest.fixture(scope="module")
def provider_stack(replicate: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The system with one model at the fake Replicate, which bills failed jobs (compute time)."""
    overrides = provider_overrides(replicate, poll_seconds=0.2)
    pricing = json.loads(overrides["REELBATCH_PRICING"])
    pricing[MODEL]["provider_bills_failures"] = True
    overrides |= {
        "REELBATCH_PRICING": json.dumps(pricing),
        "REELBATCH_RETRY_BASE_SECONDS": "0.1",
        "REELBATCH_RETRY_MAX_SECONDS": "0.2",
    }
    with fresh_stack(tmp_path_factory.mktemp("provider-jobs"), overrides) as stack:
        yield stack


def test_the_batch_page_lists_each_tasks_provider_jobs_with_their_cost(
    browser: Browser, provider_stack: Stack, replicate: FakeProvider, artifacts: Path
) -> None:
    # The first job of one prompt fails at the provider (billed: Replicate bills compute time);
    # its second attempt delivers.
    replicate.script(RETRIED, Scenario(failing_runs=1))
    api = Api(provider_stack.base_url)
    customer = api.new_customer(credits=100)
    items = [{"prompt": f"a lighthouse at dusk, take {n}", "model": MODEL} for n in range(3)]
    created = api.create_batch(customer, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    batch = api.wait_until_settled(customer, batch_id, timeout=60)
    assert (batch["status"], batch["success_count"]) == ("completed", 3)
    assert sum(replicate.creates_per_prompt().values()) == 4

    page = browser.new_page(viewport=DESKTOP)
    try:
        path = f"/admin/batches/{batch_id}?tab=provider_jobs"
        sign_in(page, provider_stack.base_url, path)
        rows = page.locator("#provider-jobs tbody tr")
        expect(rows).to_have_count(4)
        cells = [[cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()] for i in range(4)]
        job = f"${JOB_COST_USD_MICROS / 1_000_000:,.4f}"
        # (task index, attempt, provider, status, cost), in task order.
        assert [(row[0], row[1], row[2], row[4], row[5]) for row in cells] == [
            ("0", "1", "replicate", "succeeded", job),
            ("1", "1", "replicate", "failed", job),
            ("1", "2", "replicate", "succeeded", job),
            ("2", "1", "replicate", "succeeded", job),
        ]
        # The provider's own job ids, as its fake made them.
        assert {row[3] for row in cells} == set(replicate.jobs)
        assert cells[1][7].startswith("provider_error")
        total = f"${4 * JOB_COST_USD_MICROS / 1_000_000:,.4f}"
        assert (stat(page, "provider_cost"), stat(page, "provider_jobs")) == (total, "4")
        page.screenshot(path=str(artifacts / "admin-provider-jobs.png"), full_page=True)

        page.click('[data-tab="overview"]')
        expect(page.locator(".facts").first).to_contain_text(f"{total} · 4 billed job(s)")
    finally:
        page.close()
    wait_for_all_settled(provider_stack.database_url)
