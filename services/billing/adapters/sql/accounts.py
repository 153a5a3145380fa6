"""Reads of accounts that take no lock: system account ids, balances, what holds hold (SQLAlchemy Core).

Locking reads of accounts are in `ledger` (see its docstring for the lock order).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import accounts, batch_holds
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import AccountKind


@dataclass(frozen=True)
class AccountBalance:
    """A tenant account and its balance (locked when read with `lock_available`)."""

    id: int
    balance: int


class AccountQueries(TransactionQueries):
    """Account reads without locks, inside one transaction."""

    def __init__(self, conn: AsyncConnection, system_accounts: dict[AccountKind, int]) -> None:
        super().__init__(conn)
        # Shared by every transaction of a repository: system account ids never change.
        self._system_accounts = system_accounts

    async def system_account_id(self, kind: AccountKind) -> int:
        """The id of the `revenue` or `grants` account."""
        cached = self._system_accounts.get(kind)
        if cached is None:
            cached = (
                await self._conn.execute(select(accounts.c.id).where(accounts.c.kind == kind.value))
            ).scalar_one()
            self._system_accounts[kind] = cached
        return cached

    def _available_of(self, tenant_id: TenantId) -> Select[tuple[int, int]]:
        return select(accounts.c.id, accounts.c.balance).where(
            accounts.c.kind == AccountKind.AVAILABLE.value, accounts.c.tenant_id == tenant_id
        )

    async def available(self, tenant_id: TenantId) -> AccountBalance | None:
        """The tenant's available account without locking it (None: no such tenant)."""
        row = (await self._conn.execute(self._available_of(tenant_id))).first()
        return AccountBalance(row.id, row.balance) if row else None

    async def held_total(self, tenant_id: TenantId) -> int:
        """What all of the tenant's batch holds still hold: its pending holds' balances (a settled
        hold holds nothing, I1), found through their index, not among every hold it ever had."""
        total = await self._conn.execute(
            select(func.coalesce(func.sum(accounts.c.balance), 0))
            .select_from(batch_holds.join(accounts, accounts.c.id == batch_holds.c.hold_account_id))
            .where(batch_holds.c.tenant_id == tenant_id, batch_holds.c.settlement_status == "pending")
        )
        return int(total.scalar_one())
