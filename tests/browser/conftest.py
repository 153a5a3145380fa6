"""Browser fixtures: the whole system as processes, and a real headless Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack

CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The system on its own database and vhost."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(
        database_url, amqp_url, Path(tmp_path_factory.mktemp("browser-stack")), workers=1, migrated=True
    )
    try:
        running.start_all()
        yield running
    finally:
        running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


@pytest.fixture(scope="package")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # A missing browser is a failure, not a skip: `.ci/run` installs Debian's chromium.
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """Where screenshots go (kept after the run, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
