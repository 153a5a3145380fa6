"""Console users for tests and tools: the operator's invite, the invitee's sign-up through the link,
sign-in through the form (its pre-session token included) and a session's CSRF token, over HTTP
(httpx) and in a browser (Playwright), as a person would do them."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.rest_api import Api, Customer

PASSWORD = "a long enough console password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


def invite_url(api: Api, tenant_id: str, email: str, role: str) -> str:
    """The operator invites `email` as `role` (the fixed contract: 201 {invite_id, invite_url})."""
    response = api.http.post(
        f"/api/admin/tenants/{tenant_id}/console-invites",
        json={"email": email, "role": role},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"invite_id", "invite_url"}
    return str(body["invite_url"])


def accept(base_url: str, invite_url: str) -> httpx.Client:
    """The invitee opens the link and chooses `PASSWORD`; the client is signed in."""
    client = httpx.Client(base_url=base_url, timeout=30)
    page = client.get(invite_url)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    accepted = client.post(invite_url, data={"password": PASSWORD, "password_confirmation": PASSWORD})
    assert accepted.status_code == 303, accepted.text
    return client


def sign_in(base_url: str, email: str, password: str = PASSWORD) -> httpx.Response:
    """One sign-in through the form, as a browser does it (the form's token, then the post)."""
    client = httpx.Client(base_url=base_url, timeout=30)
    form = client.get("/console/login")
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None, form.text
    response = client.post(
        "/console/login", data={"email": email, "password": password, "login_token": token.group(1)}
    )
    response.extensions["client"] = client
    return response


def signed_in(base_url: str, email: str) -> httpx.Client:
    """A new session of `email`."""
    response = sign_in(base_url, email)
    assert response.status_code == 303, response.text
    client: httpx.Client = response.extensions["client"]
    return client


def csrf_of(client: httpx.Client) -> str:
    """The CSRF token of the client's session (from a page's form)."""
    page = client.get("/console/logout")
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def join_in_browser(context: BrowserContext, api: Api, customer: Customer, role: str) -> Page:
    """The operator invites a `role` user; they open the link in the browser, choose a password and
    land signed in. Returns their page."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@studio.example"
    page = context.new_page()
    page.goto(invite_url(api, customer.tenant_id, email, role))
    expect(page.locator("#invite-email")).to_have_text(email)
    page.fill("#password", PASSWORD)
    page.fill("#password_confirmation", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#user-role")).to_have_text(role)
    return page
