"""The developer's console pages in Chromium: an API key created and shown once, a webhook
endpoint registered, a failed delivery read in the timeline and replayed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.browser.console_money.conftest import SwitchableReceiver
from tests.browser.console_money.seeding import ConsoleTenant, signed_in_page
from tests.rest_api import Api, Customer
from tests.stack import Stack


def reload_until(page: Page, ready: Callable[[], bool], timeout: float = 30) -> None:
    """Reloads `page` until `ready()` holds (the delivery log is a plain page, no live updates)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)
        page.reload()


def test_a_developer_creates_a_key_shown_once_registers_an_endpoint_and_replays_a_failed_delivery(
    browser: Browser,
    money_api: Api,
    money_stack: Stack,
    tenant: ConsoleTenant,
    receiver_url: str,
    artifacts: Path,
) -> None:
    SwitchableReceiver.accepting = False
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["developer"])
    page.goto("/console/developers")

    page.click("#create-key")
    secret = page.locator("#new-key-secret").input_value()
    assert secret.startswith("rb_")
    page.goto("/console/developers")
    expect(page.locator("#new-key")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator("#keys tbody tr")).to_have_count(2)  # the API customer's key and the new one
    assert money_api.http.get("/api/enterprise/credits", headers={"X-API-Key": secret}).status_code == 200

    page.fill("#new-endpoint input[name=url]", receiver_url)
    page.fill("#new-endpoint input[name=description]", "our ingest service")
    page.check("#new-endpoint input[value='batch.completed']")
    page.click("#create-endpoint")
    endpoint_secret = page.locator("#endpoint-secret-value").input_value()
    assert endpoint_secret.startswith("whsec_")
    expect(page.locator("#endpoints tbody tr")).to_contain_text("batch.completed")

    own = Customer(tenant.customer.tenant_id, secret)
    created = money_api.create_batch(own, [{"prompt": "A harbour at dawn", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    money_api.wait_until_settled(own, created.json()["batch_id"])

    page.goto("/console/developers/deliveries")
    failed = page.locator("section.delivery[data-status=failed]")
    reload_until(page, lambda: failed.count() > 0)
    message = failed.first
    expect(message.locator(".timeline li[data-error='5xx']").first).to_contain_text("HTTP 500")
    expect(message.locator(".excerpt").first).to_contain_text("receiver exploded")
    message_id = message.get_attribute("data-message")
    assert message_id is not None
    page.screenshot(path=str(artifacts / "console-deliveries.png"), full_page=True)

    SwitchableReceiver.accepting = True
    message.locator("button.replay").click()
    expect(page.locator("#replayed")).to_contain_text(message_id)
    replayed = page.locator(f"section.delivery[data-message='{message_id}']")
    reload_until(page, lambda: replayed.get_attribute("data-status") == "delivered")
    expect(replayed.locator(".timeline li.ok")).to_have_count(1)
    assert SwitchableReceiver.received.count(message_id) >= 3
    context.close()

    # The owner reads who did it in the activity log.
    owner, owner_page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    owner_page.goto("/console/activity")
    log = owner_page.locator("main")
    for action in ("api_key.created", "webhook_endpoint.created", "webhook.message_replayed"):
        expect(log).to_contain_text(action)
    expect(log).to_contain_text(tenant.emails["developer"])
    owner.close()


def test_every_failed_message_since_a_time_is_replayed_at_once(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant
) -> None:
    SwitchableReceiver.accepting = False
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["owner"])
    created = money_api.create_batch(tenant.customer, [{"prompt": "A lighthouse in fog", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    money_api.wait_until_settled(tenant.customer, created.json()["batch_id"])
    page.goto("/console/developers/deliveries")
    reload_until(page, lambda: page.locator("section.delivery[data-status=failed]").count() > 0)
    failed_before = page.locator("section.delivery[data-status=failed]").count()

    SwitchableReceiver.accepting = True
    page.fill("#replay-failed input[name=since]", "2000-01-01T00:00")
    page.click("#replay-failed button")

    expect(page.locator("#replayed")).to_contain_text(f"{failed_before} failed message(s)")
    reload_until(page, lambda: page.locator("section.delivery[data-status=failed]").count() == 0)
    context.close()


def test_finance_sees_no_developer_page_and_is_refused_its_actions(
    browser: Browser, money_stack: Stack, tenant: ConsoleTenant
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["finance"])

    expect(page.locator("nav a[data-nav=developers]")).to_have_count(0)
    refused = page.goto("/console/developers")
    assert refused is not None and refused.status == 403
    csrf = page.request.get("/console/logout").text().split('name="csrf_token" value="')[1].split('"')[0]
    created = page.request.post(
        "/console/developers/keys", form={"csrf_token": csrf}, headers={"Origin": money_stack.base_url}
    )
    assert created.status == 403
    assert "Your role does not give access" in created.text()
    context.close()


def test_a_key_created_without_the_billing_scope_cannot_lift_its_own_budget(
    browser: Browser, money_api: Api, money_stack: Stack, tenant: ConsoleTenant
) -> None:
    context, page = signed_in_page(browser, money_stack.base_url, tenant.emails["developer"])
    page.goto("/console/developers")
    for scope in ("batches", "read", "billing"):
        page.uncheck(f"#new-key-form input[value='{scope}']")
    page.click("#create-key")
    expect(page.locator("#developer-error")).to_contain_text("at least one scope")
    expect(page.locator("#new-key")).to_have_count(0)

    page.uncheck("#new-key-form input[value='billing']")
    page.click("#create-key")
    secret = page.locator("#new-key-secret").input_value()
    row = page.locator("#keys tbody tr").last
    expect(row.locator("td.scopes")).to_have_text("batches, read")
    context.close()

    headers = {"X-API-Key": secret}
    assert money_api.http.get("/api/enterprise/credits", headers=headers).status_code == 200
    lifted = money_api.http.put("/api/enterprise/budget", headers=headers, json={"monthly_credits": 10**9})
    assert lifted.status_code == 403, lifted.text
    assert lifted.json()["error"]["code"] == "insufficient_scope"
