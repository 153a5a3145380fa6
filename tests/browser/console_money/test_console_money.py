"""The finance pages of the console in Chromium, on the seed demo: the overview, usage and books
agree with the ledger and the credits API, every CSV's sums are the ledger's, and credits are
bought through Stripe Checkout (a local fake following Stripe's API) with a receipt."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from libs.price_list import DEFAULT_PACKS
from tests.browser.console_money.seeding import ConsoleTenant, signed_in_page
from tests.fakes.stripe_checkout import FakeStripe
from tests.rest_api import Api, Customer
from tests.stack import Stack


def whole_ledger(api: Api, customer: Customer) -> list[dict[str, Any]]:
    """Every entry of the customer's ledger API, page after page."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = api.http.get("/api/enterprise/ledger", params=params, headers=customer.headers)
        assert page.status_code == 200, page.text
        entries += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return entries


def download(page: Page, selector: str) -> list[dict[str, str]]:
    """The CSV behind a link, fetched with the page's session."""
    href = page.locator(selector).get_attribute("href")
    assert href is not None
    response = page.request.get(href)
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text())))


def stat(page: Page, key: str) -> int:
    return int(page.locator(f'[data-stat="{key}"]').inner_text().replace(",", ""))


def test_the_overview_shows_credits_by_source_this_months_money_and_the_failed_items_reason(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant, artifacts: Path
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    page.goto("/console")

    credits = money_api.credits(tenant.customer)
    assert stat(page, "available") == credits["available_credits"]
    assert stat(page, "paid") + stat(page, "granted") == credits["available_credits"]
    assert stat(page, "month-spent") >= 200 and stat(page, "month-refunded") >= 10
    failure = page.locator(f"#failures tr:has(a[href*='{tenant.batch_id}'])").first
    expect(failure).to_contain_text("content_policy")
    expect(failure).to_contain_text("Customer input")
    page.screenshot(path=str(artifacts / "console-overview.png"), full_page=True)
    context.close()


def test_open_batches_progress_on_the_overview_without_navigating(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    items = [{"prompt": f"Slow waves, take {n}", "model": "sora-2"} for n in range(30)]
    created = money_api.create_batch(tenant.customer, items)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]

    page.goto("/console")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__stillTheSamePage = true")
    row = page.locator(f"#open-batches li:has(a[href='/console/batches/{batch_id}'])")
    expect(row).to_have_count(1)
    first = int(row.locator('[data-live-field="done"]').inner_text())
    assert first < 30, "the batch finished before the overview opened: the stack is too fast for this test"

    expect(row.locator('[data-live-field="done"]')).not_to_have_text(str(first), timeout=15_000)
    expect(row.locator('[data-live-field="done"]')).to_have_text("30", timeout=30_000)
    expect(row).to_have_attribute("data-live", "false", timeout=15_000)
    assert page.evaluate("window.__stillTheSamePage") is True
    assert navigations == []
    money_api.wait_until_settled(tenant.customer, batch_id)
    context.close()


def test_the_statement_closes_at_the_credits_api_and_its_csv_adds_up(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant, artifacts: Path
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    month = f"{datetime.now(UTC):%Y-%m}"
    page.goto("/console/books")
    page.click("#open-statement")
    page.wait_for_url(f"**/console/books/statements/{month}")

    closing = int(page.locator('#statement tr[data-line="closing_balance"] td').inner_text().replace(",", ""))
    assert closing == money_api.credits(tenant.customer)["available_credits"]
    # The API's statement CSV: one line per movement (spent positive), then per model and outcome.
    lines = {row["line"]: int(row["credits"]) for row in download(page, "#statement-csv") if not row["model"]}
    assert (
        lines["opening_balance"]
        + lines["purchases"]
        + lines["grants"]
        - lines["spent"]
        + lines["refunded"]
        + lines["released"]
        == lines["closing_balance"]
        == closing
    )
    ledger = whole_ledger(money_api, tenant.customer)
    assert -lines["spent"] == sum(e["credits_delta"] for e in ledger if e["ref_type"] == "batch_upfront")
    assert lines["refunded"] == sum(e["credits_delta"] for e in ledger if e["ref_type"] == "batch_refund")
    page.click("#statement-print")
    expect(page.locator("header.topbar nav a")).to_have_count(0)
    expect(page.locator("#statement")).to_contain_text("Closing balance")
    page.screenshot(path=str(artifacts / "console-statement-print.png"), full_page=True)
    context.close()


def test_every_csv_of_the_books_and_usage_sums_to_the_ledger(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    ledger = whole_ledger(money_api, tenant.customer)

    page.goto("/console/books")
    books = download(page, "#ledger-csv")
    assert sorted(int(row["credits_delta"]) for row in books) == sorted(e["credits_delta"] for e in ledger)
    assert (
        sum(int(row["credits_delta"]) for row in books)
        == money_api.credits(tenant.customer)["available_credits"]
    )
    refund = next(
        row for row in books if row["batch_id"] == tenant.batch_id and row["ref_type"] == "batch_refund"
    )
    assert (refund["model"], refund["failure_type"], refund["fault"]) == (
        "sora-2",
        "content_policy",
        "customer_input",
    )

    page.goto(f"/console/books?batch_id={tenant.batch_id}")
    expect(page.locator("#ledger tbody tr")).to_have_count(2)  # batch_upfront -200, batch_refund +10
    filtered = download(page, "#ledger-csv")
    assert sum(int(row["credits_delta"]) for row in filtered) == -190
    expect(page.locator("#ledger tr.ref-batch_refund")).to_contain_text("Customer input")
    # The refund's receipt, as the API's ledger and the task's webhook name it (ADR-104).
    [api_refund] = [
        e
        for e in whole_ledger(money_api, tenant.customer)
        if e["ref_type"] == "batch_refund" and e["batch_id"] == tenant.batch_id
    ]
    receipt = api_refund["ledger_transfer_id"]
    assert refund["ledger_transfer_id"] == receipt
    expect(page.locator("#ledger tr.ref-batch_refund .receipt")).to_have_text(receipt)

    page.goto("/console/usage")
    usage = download(page, "#usage-csv")
    assert sum(int(row["spent_credits"]) for row in usage) == -sum(
        e["credits_delta"] for e in ledger if e["ref_type"] == "batch_upfront"
    )
    assert sum(int(row["refunded_credits"]) for row in usage) == sum(
        e["credits_delta"] for e in ledger if e["ref_type"] in ("batch_refund", "batch_settle")
    )
    assert stat(page, "spent") == sum(int(row["spent_credits"]) for row in usage)
    expect(page.locator("#usage-chart rect.series-0").first).to_be_visible()
    expect(page.locator("#price-rule")).to_contain_text("Granted credits count as $0")
    context.close()


def test_buying_a_pack_through_stripe_checkout_shows_the_payment_and_its_receipt(
    browser: Browser,
    money_api: Api,
    money_stack: Stack,
    tenant: ConsoleTenant,
    fake_stripe: FakeStripe,
    artifacts: Path,
) -> None:
    pilot = DEFAULT_PACKS["pilot"]
    before = money_api.credits(tenant.customer)["available_credits"]
    finance, finance_page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    finance_page.goto("/console/credits")
    expect(finance_page.locator("#buy-not-allowed")).to_be_visible()
    expect(finance_page.locator("button.buy")).to_have_count(0)

    owner, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    page.goto("/console/credits")
    page.check("#finance-buy-setting input[name=finance_may_buy_credits]")
    page.click("#finance-buy-setting button")
    finance_page.reload()
    finance_page.locator("tr[data-pack=pilot] button.buy").click()
    finance_page.wait_for_url(f"{fake_stripe.api_url}/c/pay/**")
    expect(finance_page.locator("h1")).to_contain_text(f"${pilot.price_usd_cents / 100:,.2f}")
    finance_page.click("#pay")
    finance_page.wait_for_url("**/console/credits?checkout=done")

    assert fake_stripe.webhook_statuses[-1] == 200
    assert money_api.credits(tenant.customer)["available_credits"] == before + pilot.credits
    finance_page.reload()
    payment = finance_page.locator("#payments tbody tr").first
    expect(payment).to_contain_text(f"{pilot.credits:,}")
    payment.locator("a", has_text="Receipt").click()
    expect(finance_page.locator('#receipt [data-stat="credits"]')).to_have_text(f"{pilot.credits:,}")
    session_id = fake_stripe.sent_events[-1]["data"]["object"]["id"]
    expect(finance_page.locator("#receipt")).to_contain_text(session_id)
    finance_page.screenshot(path=str(artifacts / "console-receipt.png"), full_page=True)
    finance.close()
    owner.close()


def test_the_owner_sets_the_monthly_budget_on_the_credits_page_and_a_batch_over_it_is_refused(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant, artifacts: Path
) -> None:
    owner, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    page.goto("/console/credits")
    row = page.locator('#budgets tr[data-budget="tenant"]')
    expect(row.locator("td").nth(1)).to_have_text("none")
    used = int(row.locator("td").nth(2).inner_text().replace(",", ""))
    page.fill("#budget-form input[name=monthly_credits]", str(used + 5))
    page.click("#budget-form button")
    expect(row.locator("td").nth(1)).to_have_text(f"{used + 5:,}")
    expect(row.locator("td").nth(3)).to_have_text("5")

    refused = money_api.create_batch(tenant.customer, [{"prompt": "over budget", "model": "sora-2"}])
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
    finance, finance_page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    finance_page.goto("/console/credits")
    expect(finance_page.locator('#budgets tr[data-budget="tenant"]')).to_be_visible()
    expect(finance_page.locator("#budget-form")).to_have_count(0)
    page.screenshot(path=str(artifacts / "console-budgets.png"), full_page=True)

    page.fill("#budget-form input[name=monthly_credits]", "")
    page.click("#budget-form button")
    expect(row.locator("td").nth(1)).to_have_text("none")
    finance.close()
    owner.close()


def test_the_owner_sets_spend_alerts_on_the_credits_page_and_the_banner_shows_a_low_balance(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant, artifacts: Path
) -> None:
    owner, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    page.goto("/console/credits")
    expect(page.locator("#alert-credits-low")).to_have_count(0)
    available = money_api.credits(tenant.customer)["available_credits"]
    page.fill("#alerts-form input[name=low_balance_credits]", str(available + 1))
    page.fill("#alerts-form input[name=budget_percent]", "80")
    page.click("#alerts-form button")
    expect(page.locator("#alert-credits-low")).to_contain_text(f"{available + 1:,}")
    expect(page.locator("#alert-thresholds")).to_contain_text("80% of each monthly budget")
    stored = money_api.http.get("/api/enterprise/alerts", headers=tenant.customer.headers).json()
    assert stored == {"low_balance_credits": available + 1, "budget_percent": 80}
    page.screenshot(path=str(artifacts / "console-alerts.png"), full_page=True)
    page.goto("/console")
    expect(page.locator("#alert-credits-low")).to_be_visible()
    page.goto("/console/credits")

    page.fill("#alerts-form input[name=budget_percent]", "120")
    page.click("#alerts-form button")
    expect(page.locator("h1")).to_have_text("Alerts not saved")
    finance, finance_page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])
    finance_page.goto("/console/credits")
    expect(finance_page.locator("#alert-credits-low")).to_be_visible()
    expect(finance_page.locator("#alerts-form")).to_have_count(0)

    page.goto("/console/credits")
    page.fill("#alerts-form input[name=low_balance_credits]", "")
    page.fill("#alerts-form input[name=budget_percent]", "")
    page.click("#alerts-form button")
    expect(page.locator("#alert-credits-low")).to_have_count(0)
    expect(page.locator("#alert-thresholds")).to_contain_text("off")
    finance.close()
    owner.close()


def test_the_owner_turns_automatic_top_up_on_with_the_card_saved_at_checkout(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant, fake_stripe: FakeStripe
) -> None:
    owner, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    page.goto("/console/credits")
    expect(page.locator("#auto-top-up")).to_contain_text("off")
    # Checkout saves the card it is paid with to the tenant's Stripe customer (ADR-135).
    page.locator("tr[data-pack=pilot] button.buy").click()
    page.wait_for_url(f"{fake_stripe.api_url}/c/pay/**")
    page.click("#pay")
    page.wait_for_url("**/console/credits?checkout=done")

    page.check("#auto-top-up-form input[name=enabled]")
    page.fill("#auto-top-up-form input[name=threshold_credits]", "1000")
    page.select_option("#auto-top-up-form select[name=pack_id]", "pilot")
    page.fill("#auto-top-up-form input[name=max_per_month]", "2")
    page.click("#auto-top-up-form button")

    expect(page.locator("#auto-top-up")).to_contain_text("on: pilot below 1,000 credits, at most 2 a month")
    expect(page.locator("#auto-top-up")).to_contain_text("visa •••• 4242")
    stored = money_api.http.get("/api/enterprise/auto-top-up", headers=tenant.customer.headers).json()
    assert (stored["enabled"], stored["threshold_credits"], stored["payment_method"]) == (
        True,
        1000,
        "visa •••• 4242",
    )
    page.uncheck("#auto-top-up-form input[name=enabled]")
    page.click("#auto-top-up-form button")
    expect(page.locator("#auto-top-up")).to_contain_text("off")
    owner.close()
