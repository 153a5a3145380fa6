"""Backups restore (docs/operations.md): a `pg_dump` of a ledger in use, restored into a fresh
database with `pg_restore`, reconciles with no discrepancy and gives every tenant the same balance."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from libs.db import Database
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import migrate, price_list
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.use_cases.handlers import BillingHandlers
from tests.isolation import create_database, drop_database

from .billing_testkit import assert_ledger_invariants, funded_tenant, new_batch_id

SORA = "sora-2"


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as pg_dump and pg_restore take it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, timeout=60)


def _handlers(database: Database) -> BillingHandlers:
    return BillingHandlers(
        BillingRepository(database), price_list(dict(DEFAULT_PRICING)), outcome_source=None, chunk_size=50
    )


def _outcomes(batch: BatchId, kinds: list[OutcomeKind]) -> list[TaskOutcome]:
    return [
        TaskOutcome(batch_id=batch, task_id=TaskId(f"{batch}-{i}"), model=SORA, kind=kind)
        for i, kind in enumerate(kinds)
    ]


@pytest.fixture
def fresh_databases() -> Iterator[Callable[[], str]]:
    """Creates empty databases on demand (their URLs); drops them all after the test."""
    names: list[str] = []

    def create() -> str:
        name, url = create_database()
        names.append(name)
        return url

    yield create
    for name in names:
        drop_database(name)


@pytest.fixture
def source_url(fresh_databases: Callable[[], str]) -> str:
    url = fresh_databases()
    migrate(url)
    return url


@pytest.fixture
def restored_url(fresh_databases: Callable[[], str]) -> str:
    return fresh_databases()


@pytest.fixture
async def source(source_url: str) -> AsyncIterator[Database]:
    database = Database(source_url, pool_size=4)
    yield database
    await database.close()


async def _ledger_in_use(handlers: BillingHandlers) -> list[TenantId]:
    """Tenants with a settled batch (captures and refunds), one still running and one untouched."""
    settled_tenant = await funded_tenant(handlers, 500)
    settled = new_batch_id()
    await handlers.reserve(settled_tenant, settled, [QuoteLine(SORA, 4)])
    await handlers.apply_task_outcomes(_outcomes(settled, [OutcomeKind.CAPTURE] * 3 + [OutcomeKind.REFUND]))
    await handlers.settle(settled)
    running_tenant = await funded_tenant(handlers, 300)
    running = new_batch_id()
    await handlers.reserve(running_tenant, running, [QuoteLine(SORA, 10)])
    await handlers.apply_task_outcomes(_outcomes(running, [OutcomeKind.CAPTURE, OutcomeKind.REFUND]))
    idle_tenant = await funded_tenant(handlers, 70)
    return [settled_tenant, running_tenant, idle_tenant]


async def test_a_dump_restored_into_a_fresh_database_reconciles(
    source: Database, source_url: str, restored_url: str, tmp_path: Path
) -> None:
    handlers = _handlers(source)
    tenants = await _ledger_in_use(handlers)
    before = {tenant: await handlers.get_balance(tenant) for tenant in tenants}
    dump = tmp_path / "reelbatch.dump"

    # The commands docs/operations.md gives the operator (run off the event loop).
    await asyncio.to_thread(
        _run, "pg_dump", "--format=custom", "--no-owner", f"--file={dump}", _libpq(source_url)
    )
    await asyncio.to_thread(_run, "pg_restore", "--no-owner", f"--dbname={_libpq(restored_url)}", str(dump))

    restored = Database(restored_url, pool_size=4)
    try:
        restored_handlers = _handlers(restored)
        report = await restored_handlers.reconcile()
        assert report.discrepancies == []
        assert report.accounts_checked >= len(tenants)
        assert report.batches_checked == 2
        for tenant, balance in before.items():
            assert await restored_handlers.get_balance(tenant) == balance
        await assert_ledger_invariants(restored)
        # The restored ledger keeps working: a payment lands and the books still reconcile.
        await restored_handlers.top_up(tenants[2], 30, "after-restore")
        assert (await restored_handlers.get_balance(tenants[2])).available_credits == 100
        assert (await restored_handlers.reconcile()).discrepancies == []
    finally:
        await restored.close()
