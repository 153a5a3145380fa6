"""A freeze reads the tenant's debt with the wallet row it locks (ADR-165): a debt recorded while
the freeze waits for the wallet is the debt it sees, never the one of the moment it started."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from libs.db import Database, libpq_url
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import price_list
from services.billing.domain.ids import TenantId
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.reversals import DebtOutstanding
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import funded_tenant, new_batch_id

# The debt is written by hand (no ledger entries), so this test has a database of its own.
_LOCK_WALLET = (
    "SELECT id FROM billing.accounts WHERE tenant_id = %s AND kind IN ('available', 'debt')"
    " ORDER BY id FOR NO KEY UPDATE"
)


async def _waiting_on_a_lock(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(500):
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the freeze never waited for the wallet")


async def _freeze_while_a_debt_is_written(url: str, commit: bool) -> BaseException | None:
    """Locks the tenant's wallet, writes a debt of 5 credits, starts a freeze (which waits for the
    wallet), then commits or rolls back; the freeze's refusal, or None when it was accepted."""
    database = Database(url, pool_size=4)
    try:
        handlers = BillingHandlers(
            BillingRepository(database),
            price_list(dict(DEFAULT_PRICING)),
            outcome_source=None,
            chunk_size=200,
        )
        tenant: TenantId = await funded_tenant(handlers, 100)
        async with await psycopg.AsyncConnection.connect(libpq_url(url)) as writer:
            await writer.execute(
                "INSERT INTO billing.accounts (kind, tenant_id) VALUES ('debt', %s)", (tenant,)
            )
            await writer.commit()
            await writer.execute(_LOCK_WALLET, (tenant,))
            await writer.execute(
                "UPDATE billing.accounts SET balance = -5 WHERE tenant_id = %s AND kind = 'debt'", (tenant,)
            )
            freeze = asyncio.create_task(handlers.reserve(tenant, new_batch_id(), [QuoteLine("sora-2", 1)]))
            await _waiting_on_a_lock(libpq_url(url))
            await (writer.commit() if commit else writer.rollback())
        try:
            await freeze
        except DebtOutstanding as refused:
            return refused
        return None
    finally:
        await database.close()


async def test_a_debt_recorded_while_the_freeze_waits_for_the_wallet_refuses_it(
    own_database_url: str,
) -> None:
    refused = await _freeze_while_a_debt_is_written(own_database_url, commit=True)
    assert isinstance(refused, DebtOutstanding)
    assert refused.details["debt_credits"] == "5"


async def test_a_debt_rolled_back_while_the_freeze_waits_refuses_nothing(own_database_url: str) -> None:
    assert await _freeze_while_a_debt_is_written(own_database_url, commit=False) is None


async def test_the_wallet_row_keeps_what_the_debt_account_records(own_database_url: str) -> None:
    tenant = uuid.uuid4()
    with psycopg.connect(libpq_url(own_database_url), autocommit=True) as conn:
        conn.execute("INSERT INTO billing.tenants (id, name) VALUES (%s, 'owes')", (tenant,))
        for kind in ("available", "debt"):
            conn.execute("INSERT INTO billing.accounts (kind, tenant_id) VALUES (%s, %s)", (kind, tenant))
        owed = "SELECT owed FROM billing.accounts WHERE tenant_id = %s AND kind = 'available'"
        for balance in (-30, -12, 0):
            conn.execute(
                "UPDATE billing.accounts SET balance = %s WHERE tenant_id = %s AND kind = 'debt'",
                (balance, tenant),
            )
            assert conn.execute(owed, (tenant,)).fetchone() == (-balance,)
