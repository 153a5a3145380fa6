"""The admin dashboard in real headless Chromium, on the whole system: the seed's live demo.

A customer submits the seed batch (20 sora-2 videos, one of which times out at the provider);
the admin signs in, opens the batch and reads the figures the seed demo promises finance.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.rest_api import Api, Customer
from tests.stack import ADMIN_TOKEN, Stack

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


class FlakyReceiver(BaseHTTPRequestHandler):
    """A customer webhook endpoint that fails the first delivery attempt, then accepts."""

    seen: set[str] = set()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        message_id = self.headers.get("webhook-id", "")
        first = message_id not in FlakyReceiver.seen
        FlakyReceiver.seen.add(message_id)
        self.send_response(503 if first else 200)
        self.end_headers()
        self.wfile.write(b"busy" if first else b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def webhook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def seed_batch(api: Api, webhook_url: str) -> tuple[Customer, str]:
    """The seed demo batch, settled: 19 delivered, 1 timed out and refunded."""
    customer = api.new_customer(5000)
    items = [{"prompt": f"A cat playing piano, take {n}", "model": "sora-2"} for n in range(19)]
    items.insert(7, {"prompt": "A dog in space #timeout", "model": "sora-2"})
    response = api.http.post(
        "/api/enterprise/video-batch",
        json={"items": items, "webhook_url": webhook_url},
        headers={**customer.headers, "X-Request-ID": f"demo-{uuid.uuid4()}"},
    )
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    return customer, batch_id


def wait_for_delivered_webhook(api: Api, batch_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page = api.http.get(f"/api/admin/batches/{batch_id}/webhooks", headers=api.admin)
        if page.status_code == 200 and any(
            delivery["status"] == "delivered" and len(delivery["attempts"]) >= 2
            for delivery in page.json()["items"]
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no webhook delivered after a retry in {timeout}s: {page.text}")
        time.sleep(0.2)


def sign_in(page: Page, base_url: str, next_path: str) -> None:
    page.goto(f"{base_url}{next_path}")
    expect(page).to_have_url(f"{base_url}/admin/sign-in?next={quote(next_path, safe='')}")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}{next_path}")


def stat(page: Page, key: str) -> str:
    return page.locator(f'[data-stat="{key}"]').inner_text()


def test_admin_reads_the_seed_batch_on_every_tab(
    browser: Browser, stack: Stack, api: Api, seed_batch: tuple[Customer, str], artifacts: Path
) -> None:
    _, batch_id = seed_batch
    wait_for_delivered_webhook(api, batch_id)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()

    sign_in(page, stack.base_url, f"/admin/batches/{batch_id}")

    overview = {
        key: stat(page, key)
        for key in ("status", "total", "success", "failed", "frozen", "spent", "refunded")
    }
    assert overview == {
        "status": "partial",
        "total": "20",
        "success": "19",
        "failed": "1",
        "frozen": "200",
        "spent": "190",
        "refunded": "10",
    }
    assert stat(page, "net") == "190"
    assert stat(page, "margin") == "76.0%"
    expect(page.locator('[data-fault="provider"]')).to_contain_text("timeout")
    page.screenshot(path=str(artifacts / "batch-overview-desktop.png"), full_page=True)

    page.click('[data-tab="billing"]')
    assert (stat(page, "upfront"), stat(page, "refund"), stat(page, "net-spent")) == ("200", "10", "190")
    expect(page.locator("#ledger tbody tr")).to_have_count(21)  # freeze, 19 captures, 1 refund
    expect(page.locator("#ledger tr.ref-batch_refund")).to_contain_text("+10")
    page.screenshot(path=str(artifacts / "batch-billing-desktop.png"), full_page=True)

    page.click('[data-tab="tasks"]')
    page.select_option("select[name=limit]", "10")
    page.click(".filters button[type=submit]")
    expect(page.locator("#tasks tbody tr")).to_have_count(10)
    first_page = page.locator("#tasks tbody tr td:first-child").all_inner_texts()
    page.click("#next-page")
    expect(page.locator("#tasks tbody tr")).to_have_count(10)
    second_page = page.locator("#tasks tbody tr td:first-child").all_inner_texts()
    assert first_page == [str(n) for n in range(10)]
    assert second_page == [str(n) for n in range(10, 20)]
    expect(page.locator("#next-page")).to_have_count(0)
    page.select_option("select[name=status]", "failed")
    page.click(".filters button[type=submit]")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    expect(page.locator("#tasks tbody tr")).to_contain_text("timeout")
    page.screenshot(path=str(artifacts / "batch-tasks-desktop.png"), full_page=True)

    page.click('[data-tab="webhooks"]')
    delivered = page.locator("article.delivery", has=page.locator(".badge-delivered")).first
    expect(delivered.locator("table.attempts tbody tr")).to_have_count(2)
    expect(delivered.locator("table.attempts tbody tr").first).to_contain_text("503")
    page.screenshot(path=str(artifacts / "batch-webhooks-desktop.png"), full_page=True)
    context.close()


def test_dashboard_reads_well_on_a_phone(
    browser: Browser, stack: Stack, seed_batch: tuple[Customer, str], artifacts: Path
) -> None:
    _, batch_id = seed_batch
    context = browser.new_context(viewport=PHONE, is_mobile=True)
    page = context.new_page()

    sign_in(page, stack.base_url, f"/admin/batches/{batch_id}")

    assert stat(page, "refunded") == "10"
    # Nothing wider than the screen: no sideways scrolling on the overview.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts / "batch-overview-phone.png"), full_page=True)
    page.goto(f"{stack.base_url}/admin/batches")
    expect(page.locator(f'a[href="/admin/batches/{batch_id}"]')).to_be_visible()
    page.screenshot(path=str(artifacts / "batches-phone.png"), full_page=True)
    context.close()


def test_batch_list_and_tenant_page_show_progress_and_balances(
    browser: Browser, stack: Stack, seed_batch: tuple[Customer, str], artifacts: Path
) -> None:
    customer, batch_id = seed_batch
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, stack.base_url, "/admin/batches")

    row = page.locator("#batches tbody tr", has=page.locator(f'a[href="/admin/batches/{batch_id}"]'))
    expect(row.locator(".badge-partial")).to_be_visible()
    expect(row.locator(".progress .bar-ok")).to_have_count(1)
    # 19 of 20 delivered: the green part of the bar (an inline width the CSP must allow) is wide.
    ok_bar = row.locator(".progress .bar-ok").bounding_box()
    whole_bar = row.locator(".progress").bounding_box()
    assert ok_bar is not None and whole_bar is not None
    assert ok_bar["width"] > 0.9 * whole_bar["width"]
    page.screenshot(path=str(artifacts / "batches-desktop.png"), full_page=True)

    row.locator(f'a[href="/admin/tenants/{customer.tenant_id}"]').click()
    assert stat(page, "available") == "4,810"
    expect(page.locator("#tenant-ledger tbody tr").first).to_contain_text("batch_refund")
    page.screenshot(path=str(artifacts / "tenant-desktop.png"), full_page=True)

    page.click("text=Reconciliation")
    expect(page.locator("#balanced")).to_be_visible()
    context.close()


def test_pages_without_a_session_go_to_sign_in(
    browser: Browser, stack: Stack, seed_batch: tuple[Customer, str]
) -> None:
    _, batch_id = seed_batch
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()

    for path in (
        "/admin/batches",
        f"/admin/batches/{batch_id}?tab=billing",
        "/admin/tenants",
        "/admin/reconciliation",
    ):
        page.goto(f"{stack.base_url}{path}")
        expect(page).to_have_url(f"{stack.base_url}/admin/sign-in?next={quote(path, safe='')}")
    page.fill("#token", "demo-key")
    page.click("button[type=submit]")
    expect(page.locator(".notice-error")).to_contain_text("not the admin token")
    context.close()
