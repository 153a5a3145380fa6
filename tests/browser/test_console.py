"""The customer console in real headless Chromium, on the whole system: the seed's live demo as the
customer's finance user sees it, and a batch's progress advancing on an open page.

The stack runs slower than the other browser tests' (half a second per video, two at a time), so
a batch is still running while its page is open.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console_users import join_in_browser
from tests.invariants import check_invariants, wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The system with videos that take half a second, two at a time per worker."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(
        database_url,
        amqp_url,
        Path(tmp_path_factory.mktemp("console-stack")),
        workers=1,
        migrated=True,
        overrides={
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.5",
            "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "1.0",
            "REELBATCH_WORKER_CONCURRENCY": "2",
        },
    )
    try:
        running.start_all()
        yield running
        # Every scenario ends on the money invariants (I1-I6) over the whole database.
        wait_for_all_settled(database_url)
        check_invariants(database_url).assert_clean()
    finally:
        running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


@pytest.fixture(scope="module")
def slow_api(slow_stack: Stack) -> Iterator[Api]:
    client = Api(slow_stack.base_url)
    yield client
    client.http.close()


def _stat(page: Page, key: str) -> str:
    return page.locator(f'[data-stat="{key}"]').inner_text()


def test_finance_reads_the_seed_demo_batch_and_its_csv_matches_the_ledger(
    browser: Browser, slow_stack: Stack, slow_api: Api, artifacts: Path
) -> None:
    api = slow_api
    customer = api.new_customer(5000)
    items = [{"prompt": f"A cat playing piano, take {n}", "model": "sora-2"} for n in range(19)]
    items.insert(7, {"prompt": "A dog in space #timeout", "model": "sora-2"})
    created = api.http.post(
        "/api/enterprise/video-batch",
        json={"items": items},
        headers={**customer.headers, "X-Request-ID": f"demo-{uuid.uuid4()}"},
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = join_in_browser(context, api, customer, "finance")
    # The console opens on the overview; the batches are one click away in the top bar.
    page.click('nav a[data-nav="batches"]')
    page.click(f'a[href="/console/batches/{batch_id}"]')

    assert {key: _stat(page, key) for key in ("total_count", "success_count", "failed_count")} == {
        "total_count": "20",
        "success_count": "19",
        "failed_count": "1",
    }
    assert (_stat(page, "frozen_credits"), _stat(page, "credits_spent"), _stat(page, "refunded_credits")) == (
        "200",
        "190",
        "10",
    )
    assert _stat(page, "net_spent") == "190"
    # Whose fault: the provider's (a timeout); no vendor data (margin, provider cost) on the page.
    expect(page.locator('[data-fault="provider"]')).to_contain_text("timeout")
    for vendor_only in ("Margin", "Provider cost", "margin"):
        assert vendor_only not in page.content()
    page.screenshot(path=str(artifacts / "console-batch-overview.png"), full_page=True)

    page.click('[data-tab="ledger"]')
    expect(page.locator('#ledger tr[data-ref-type="batch_upfront"] .delta')).to_have_text("-200")
    expect(page.locator('#ledger tr[data-ref-type="batch_refund"] .delta')).to_have_text("+10")
    assert _stat(page, "net-spent") == "190"

    page.click('[data-tab="tasks"]')
    page.select_option("select[name=status]", "failed")
    page.click(".filters button[type=submit]")
    failed = page.locator("#tasks tbody tr")
    expect(failed).to_have_count(1)
    expect(failed.locator('td[data-label="Failure type"]')).to_have_text("timeout")
    expect(failed.locator('td[data-label="Whose fault"]')).to_have_text("Provider")
    assert failed.locator('td[data-label="Reason"]').inner_text() not in ("", "—")

    # The results file (succeeded items) and the errors file (failed and cancelled), as the API's.
    rows = []
    for button in ("#results-csv", "#errors-csv"):
        with page.expect_download() as download_info:
            page.click(button)
        rows += list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert len(rows) == 20
    charged = sum(int(row["credits_charged"]) for row in rows)
    refunded = sum(int(row["credits_refunded"]) for row in rows)
    ledger = api.http.get(f"/api/admin/batches/{batch_id}/billing", headers=api.admin).json()
    assert (charged, refunded) == (ledger["capture_total"], ledger["refund_total"]) == (190, 10)
    assert ledger["upfront_total"] - refunded == 190
    [failed_row] = [row for row in rows if row["status"] == "failed"]
    assert (failed_row["batch_index"], failed_row["failure_type"], failed_row["fault"]) == (
        "7",
        "timeout",
        "provider",
    )
    context.close()


def test_progress_advances_on_an_open_page_without_navigation(
    browser: Browser, slow_stack: Stack, slow_api: Api
) -> None:
    api = slow_api
    customer = api.new_customer(1000)
    context = browser.new_context()
    page = join_in_browser(context, api, customer, "developer")
    items = [{"prompt": f"A slow river, shot {n}", "model": "sora-2"} for n in range(16)]
    created = api.create_batch(customer, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]

    page.goto(f"{slow_stack.base_url}/console/batches/{batch_id}")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__stillTheSamePage = true")
    first = int(_stat(page, "success_count"))
    assert first < 16, "the batch finished before its page opened: the stack is too fast for this test"

    # Advances in place (the script polls the progress JSON), then reaches the end, settled.
    expect(page.locator('[data-stat="success_count"]')).not_to_have_text(str(first), timeout=15_000)
    expect(page.locator('[data-stat="success_count"]')).to_have_text("16", timeout=30_000)
    expect(page.locator('[data-live-field="settlement_status"] .badge')).to_have_text(
        "settled", timeout=15_000
    )
    assert page.evaluate("window.__stillTheSamePage") is True
    assert navigations == []
    context.close()
