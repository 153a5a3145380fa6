"""Fixtures of the SDK and CLI end-to-end tests: the real system, once, in its cheapest form.

One embedded stack (`reelbatch run`: one process, embedded PostgreSQL, the simulated provider with
the tests' short provider timeout, so `#timeout` ends in well under a second) for the package;
the SDK and the `reelbatch-client` command talk to it over HTTP like a customer. The money
invariants I1-I5 are checked after every test, as in tests/e2e.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded_stack import EmbeddedStack
from tests.invariants import wait_for_all_settled
from tests.rest_api import Api, Customer

# Minutes of CPU (the 500-row CLI run, every download, an embedded stack of its own): collected
# with the scale-out tests by `make test-scale` (REELBATCH_TEST_SCALE=1), which CI runs after
# `make test`, so `make test` stays under 15 minutes.
collect_ignore_glob = [] if os.environ.get("REELBATCH_TEST_SCALE") == "1" else ["test_*.py"]

CLI = shutil.which("reelbatch-client", path=str(Path(sys.executable).parent)) or "reelbatch-client"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(Path(tmp_path_factory.mktemp("sdk-stack")))
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        assert all(code in (0, -9) for code in codes.values()), (codes, running.log("reelbatch"))


@pytest.fixture(scope="package")
def api(stack: EmbeddedStack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


@pytest.fixture
def customer(api: Api) -> Customer:
    """A tenant of its own with plenty of credits."""
    return api.new_customer(credits=100_000)


@pytest.fixture
def cli_env(stack: EmbeddedStack, customer: Customer) -> dict[str, str]:
    """The environment `reelbatch-client` runs with: the key and address, no config file."""
    return {
        **os.environ,
        "REELBATCH_API_KEY": customer.api_key,
        "REELBATCH_BASE_URL": stack.base_url,
        "REELBATCH_CONFIG": "/nonexistent/reelbatch.toml",
    }


@pytest.fixture(autouse=True)
def money_invariants_hold_afterwards(stack: EmbeddedStack) -> Iterator[None]:
    """After every test: all batches settle and I1-I5 hold over the whole database."""
    yield
    wait_for_all_settled(stack.database_url)
