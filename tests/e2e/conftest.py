"""End-to-end fixtures: the whole system as OS processes on a fresh database and vhost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.invariants import wait_for_all_settled
from tests.isolation import create_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The system on its own database and vhost, so no other test's consumers share its queues."""
    db_name, database_url = create_database()
    vhost, amqp_url = create_vhost()
    running = Stack(database_url, amqp_url, Path(tmp_path_factory.mktemp("stack")))
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
        unclean = {name: code for name, code in codes.items() if code not in (0, -9)}
        assert not unclean, f"processes did not stop cleanly: {unclean}\n" + "\n".join(
            running.log(name) for name in unclean
        )


@pytest.fixture(scope="package")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


@pytest.fixture(autouse=True)
def money_invariants_hold_afterwards(stack: Stack) -> Iterator[None]:
    """After every end-to-end test: all batches settle and I1-I5 hold over the whole database."""
    yield
    wait_for_all_settled(stack.database_url)
