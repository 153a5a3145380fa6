"""`/docs` (customer API) and `/admin/docs` (operator API) render with no network: every
script, style and font comes from the gateway itself (no CDN). The browser is cut off from every
other origin; any request that tries to leave is recorded and fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.stack import Stack


def _offline_page(browser: Browser, stack: Stack, left: list[str]) -> Page:
    page = browser.new_page()

    def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(stack.base_url):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_gateway)
    return page


@pytest.mark.parametrize(
    ("path", "title", "operation"),
    [
        ("/docs", "Reelbatch API", "/api/enterprise/video-batch"),
        ("/admin/docs", "Reelbatch API (operator)", "/api/admin/tenants"),
    ],
)
def test_swagger_ui_renders_every_operation_offline(
    browser: Browser, stack: Stack, artifacts: Path, path: str, title: str, operation: str
) -> None:
    left: list[str] = []
    page = _offline_page(browser, stack, left)
    try:
        page.goto(f"{stack.base_url}{path}")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        assert page.locator(".swagger-ui .info .title").inner_text().startswith(title)
        page.wait_for_selector(f'.opblock-summary-path[data-path="{operation}"]', timeout=15_000)
        assert page.locator(".opblock").count() > 10
        page.screenshot(path=str(artifacts / f"docs{path.replace('/', '-')}.png"))
    finally:
        page.close()
    assert left == [], f"the docs page reached outside the gateway: {left}"
