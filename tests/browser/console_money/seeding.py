"""The console's seed demo, shared by the browser tests and `make console-screenshots`: a tenant
with the seed batch (20 sora-2 videos, one refused for its content) and a console member per role
(invited through the operator API, signed up through the invite link), and signing in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from playwright.sync_api import Browser, BrowserContext, Page

from tests.console_users import PASSWORD, accept, invite_url
from tests.rest_api import Api, Customer

ROLES = ("owner", "developer", "finance")


@dataclass
class ConsoleTenant:
    """A tenant with an API customer, a settled seed batch and a console member per role."""

    customer: Customer
    batch_id: str
    emails: dict[str, str] = field(default_factory=dict)


def invite(api: Api, tenant_id: str, role: str) -> tuple[str, str]:
    """A console invite of the tenant: (email, invite URL)."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@studio.example"
    return email, invite_url(api, tenant_id, email, role)


def seed_tenant(api: Api, base_url: str) -> ConsoleTenant:
    """The seed demo: 5,000 credits, 20 sora-2 videos of which one fails; a member per role."""
    customer = api.new_customer(5000)
    items = [{"prompt": f"A cat playing piano, take {n}", "model": "sora-2"} for n in range(19)]
    items.insert(7, {"prompt": "A dog in space #fail", "model": "sora-2"})
    created = api.create_batch(customer, items, request_id=f"demo-{uuid.uuid4()}")
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    tenant = ConsoleTenant(customer, batch_id)
    for role in ROLES:
        email, url = invite(api, customer.tenant_id, role)
        accept(base_url, url).close()
        tenant.emails[role] = email
    return tenant


def signed_in_page(browser: Browser, base_url: str, email: str) -> tuple[BrowserContext, Page]:
    """A fresh browser context signed in as `email` through the sign-in form."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/console/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/console" in url and "/console/login" not in url)
    return context, page
