"""End-to-end fixtures: the whole system, driven through REST, in both ways it runs.

`distributed`: every service its own OS process on a fresh database and vhost (PostgreSQL and
RabbitMQ). `embedded`: one `reelbatch run` process on its own embedded PostgreSQL and the Postgres
bus, in a temporary folder with no database or broker URL. Every test runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.embedded_stack import EmbeddedStack
from tests.invariants import wait_for_all_settled
from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api
from tests.stack import Stack
from tests.stack_protocol import RunningStack


def _distributed(workdir: Path) -> Iterator[Stack]:
    """The system on its own database and vhost, so no other test's consumers share its queues."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(database_url, amqp_url, workdir, migrated=True)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)
        _assert_stopped_cleanly(codes, running.log)


def _embedded(workdir: Path) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(workdir)
    try:
        running.start_all()
        yield running
    finally:
        codes = running.stop_all()
        _assert_stopped_cleanly(codes, running.log)


def _assert_stopped_cleanly(codes: dict[str, int], log: Callable[[str], str]) -> None:
    unclean = {name: code for name, code in codes.items() if code not in (0, -9)}
    assert not unclean, f"processes did not stop cleanly: {unclean}\n" + "\n".join(
        log(name) for name in unclean
    )


@pytest.fixture(scope="package", params=["distributed", "embedded"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The running system, once per way of running it."""
    workdir = Path(tmp_path_factory.mktemp(f"stack-{request.param}"))
    if request.param == "embedded":
        yield from _embedded(workdir)
    else:
        yield from _distributed(workdir)


@pytest.fixture(scope="package")
def api(stack: RunningStack) -> Iterator[Api]:
    client = Api(stack.base_url)
    yield client
    client.http.close()


@pytest.fixture(autouse=True)
def money_invariants_hold_afterwards(stack: RunningStack) -> Iterator[None]:
    """After every end-to-end test: all batches settle and I1-I5 hold over the whole database."""
    yield
    wait_for_all_settled(stack.database_url)
