"""`make console-screenshots`: every page of the customer console on the seed demo, in Chromium.

Starts the whole system (its own database and vhost: `make services` first), replays the seed demo
(a tenant with 5,000 credits, the 20-video batch with one failure, a member per role), adds what
the money and developer pages show (an invoice payment, a webhook endpoint whose receiver fails),
then opens every page of the console's route table (every GET page; a batch's tabs each) as a
member allowed to see it, saves a PNG per page under docs/console/ and writes docs/console.md.
Not run on CI: screenshots change with every style change.
"""

from __future__ import annotations

import re
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

from services.gateway.console.route_table import ROUTES, ConsoleRoute
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.console_money.seeding import ConsoleTenant, invite, seed_tenant, signed_in_page
from tests.fakes.stripe_checkout import FakeStripe, running_fake_stripe, stack_settings, webhook_url_of
from tests.rest_api import Api
from tests.stack import STRIPE_WEBHOOK_SECRET, Stack, fresh_stack

DOCS = Path(__file__).parents[2] / "docs"
SHOTS = DOCS / "console"
# Who looks at each page: the first role of this order the route admits.
VIEWER_ORDER = ("owner", "finance", "developer")
BATCH_TABS = ("overview", "tasks", "ledger", "webhooks")


class FailingReceiver(BaseHTTPRequestHandler):
    """A webhook endpoint that is down: every delivery gets a 503 and a short body."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"maintenance window")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def running_system(workdir: Path) -> Iterator[tuple[Stack, FakeStripe]]:
    """The system as processes on a fresh database and vhost, paying through the fake Stripe."""
    with running_fake_stripe(STRIPE_WEBHOOK_SECRET) as state:
        overrides = {**stack_settings(state), "REELBATCH_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0.0, 0.2]"}

        def send_payments_here(stack: Stack) -> None:
            state.webhook_url = webhook_url_of(stack.base_url)

        with fresh_stack(workdir, overrides, before_start=send_payments_here) as stack:
            yield stack, state


def decorate(api: Api, tenant: ConsoleTenant, receiver_url: str) -> None:
    """What the money and developer pages show beyond the seed batch."""
    paid = api.http.post(
        f"/api/admin/tenants/{tenant.customer.tenant_id}/payments",
        json={"reference": f"INV-{uuid.uuid4().hex[:6].upper()}", "pack_id": "pilot"},
        headers=api.admin,
    )
    assert paid.status_code == 200, paid.text
    endpoint = api.http.post(
        "/api/enterprise/webhook-endpoints",
        json={"url": receiver_url, "event_types": ["batch.completed"], "description": "ingest service"},
        headers=tenant.customer.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    created = api.create_batch(tenant.customer, [{"prompt": "A harbour at dawn", "model": "sora-2"}])
    assert created.status_code == 202, created.text
    api.wait_until_settled(tenant.customer, created.json()["batch_id"])


def sample_path(route: ConsoleRoute, api: Api, tenant: ConsoleTenant) -> str | None:
    """The route's path with the seed's objects in it; None for a path without a sample (a receipt's
    payment id is read from the credits page instead)."""
    path = route.path
    if "{batch_id}" in path:
        path = path.replace("{batch_id}", tenant.batch_id)
    if "{month}" in path:
        path = path.replace("{month}", f"{datetime.now(UTC):%Y-%m}")
    if "{token}" in path:
        _, url = invite(api, tenant.customer.tenant_id, "developer")
        path = path.replace("{token}", url.rsplit("/", 1)[1])
    return None if "{" in path else path


def shoot(
    browser: Browser, stack: Stack, api: Api, tenant: ConsoleTenant
) -> list[tuple[ConsoleRoute, str, str]]:
    """Screenshots of every GET page; (route, path shown, image file) each."""
    taken: list[tuple[ConsoleRoute, str, str]] = []
    pages = {role: signed_in_page(browser, stack.base_url, tenant.emails[role]) for role in VIEWER_ORDER}
    public = browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 900})
    for route in ROUTES:
        if route.method != "GET" or route.kind != "page":
            continue
        viewer = next((role for role in VIEWER_ORDER if role in route.roles), None)
        page = public.new_page() if route.public else pages[viewer][1] if viewer else None
        if page is None:
            continue
        paths: list[str] = []
        if route.name == "receipt":
            page.goto("/console/credits")
            href = page.locator("#payments a", has_text="Receipt").first.get_attribute("href")
            paths = [href] if href else []
        elif "{batch_id}" in route.path and route.path.endswith("{batch_id}"):
            paths = [f"/console/batches/{tenant.batch_id}?tab={tab}" for tab in BATCH_TABS]
        elif (sample := sample_path(route, api, tenant)) is not None:
            paths = [sample]
        for path in paths:
            page.goto(path)
            if page.url.split(stack.base_url, 1)[-1] != path:
                continue  # a page that only redirects (e.g. the statement picker) has no picture
            slug = re.sub(
                r"[^a-z0-9]+", "-", f"{route.name} {path.split('?tab=')[-1] if '?tab=' in path else ''}"
            )
            image = f"{slug.strip('-')}.png"
            page.screenshot(path=str(SHOTS / image), full_page=True)
            taken.append((route, path, image))
            print(f"  {path} -> docs/console/{image}")
    for context, _ in pages.values():
        context.close()
    public.close()
    return taken


def _shown_path(route: ConsoleRoute, path: str) -> str:
    """The route's declared path (a batch page with its tab), not the seed's ids."""
    return route.path + (f"?tab={path.split('?tab=')[1]}" if "?tab=" in path else "")


HAND_WRITTEN_MARKER = "<!-- written by hand below: kept by make console-screenshots -->"


def write_index(taken: list[tuple[ConsoleRoute, str, str]]) -> None:
    """docs/console.md: every page with its roles and screenshot, then every route of the table."""
    lines = [
        "# Customer console: every page",
        "",
        "Screenshots of each console page on the seed demo data (a tenant with 5,000 credits, the",
        "20-video batch with one refused item, a paid pilot pack, a webhook endpoint that is down),",
        "seen by the tenant's owner (public pages signed out). Refreshed by `make console-screenshots`",
        "(not on CI). Roles come from the console's route table (`services/gateway/console/route_table.py`),",
        "which the role, cross-tenant, signed-out and CSRF matrices are generated from.",
        "",
        "| page | path | roles |",
        "|---|---|---|",
    ]
    for route, path, image in taken:
        roles = ", ".join(sorted(route.roles)) or "public"
        lines.append(f"| [{route.name}](#{image[:-4]}) | `{_shown_path(route, path)}` | {roles} |")
    lines += ["", "Every route (pages, forms, exports, JSON):", ""]
    lines += ["| route | method | path | kind | roles |", "|---|---|---|---|---|"]
    for route in ROUTES:
        roles = ", ".join(sorted(route.roles)) or "public"
        lines.append(f"| {route.name} | {route.method} | `{route.path}` | {route.kind} | {roles} |")
    lines.append("")
    for route, path, image in taken:
        lines += [f'<a id="{image[:-4]}"></a>', f"## {route.name}: `{_shown_path(route, path)}`", ""]
        lines += [f"![{route.name}](console/{image})", ""]
    index = DOCS / "console.md"
    # What is written by hand below the marker (how files, filters and roles work) is kept.
    kept = index.read_text().partition(HAND_WRITTEN_MARKER)[2] if index.exists() else ""
    if kept:
        lines += [HAND_WRITTEN_MARKER + kept.rstrip("\n"), ""]
    index.write_text("\n".join(lines))


def main() -> int:
    """Seeds, shoots every page, writes the index."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), FailingReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as workdir, running_system(Path(workdir)) as (stack, _):
        api = Api(stack.base_url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            tenant = seed_tenant(api, stack.base_url)
            decorate(api, tenant, f"http://127.0.0.1:{receiver.server_address[1]}/hooks")
            taken = shoot(browser, stack, api, tenant)
            browser.close()
        api.http.close()
    receiver.shutdown()
    write_index(taken)
    print(f"{len(taken)} screenshots, docs/console.md written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
