"""Fixtures for billing against a real PostgreSQL: the schema migrated once per module,
a Database per test, handlers wired with a controllable clock and outcome source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from libs.db import Database
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import migrate, price_list
from services.billing.use_cases.dependencies import TaskOutcomeSource
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import migrated_database

from .billing_testkit import Clock, HandlersFactory, RecordedOutcomes


@pytest.fixture(scope="module")
def billing_database_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def database(billing_database_url: str) -> AsyncIterator[Database]:
    db = Database(billing_database_url, pool_size=12)
    yield db
    await db.close()


@pytest.fixture
def outcomes() -> RecordedOutcomes:
    return RecordedOutcomes()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_handlers(database: Database, clock: Clock) -> HandlersFactory:
    def build(*, outcome_source: TaskOutcomeSource | None = None, chunk_size: int = 200) -> BillingHandlers:
        return BillingHandlers(
            BillingRepository(database),
            price_list(dict(DEFAULT_PRICING)),
            outcome_source=outcome_source,
            chunk_size=chunk_size,
            clock=clock,
        )

    return build


@pytest.fixture
def handlers(make_handlers: HandlersFactory, outcomes: RecordedOutcomes) -> BillingHandlers:
    return make_handlers(outcome_source=outcomes)


@pytest.fixture
def own_database_url() -> Iterator[str]:
    """A database of this test's own: the ledger checks read whole tables, and the module's shared
    database holds other tests' money (some of it broken on purpose, for the reconciliation)."""
    with migrated_database() as url:
        yield url
