"""The billing unit of work: opens a transaction and hands use cases its queries, one object per topic.

The SQL itself lives in `adapters/sql/<topic>.py`; the lock order every writer follows is in the
docstring of `adapters/sql/ledger.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.bus import Envelope
from libs.db import Database
from libs.outbox import add_events
from services.billing.adapters.sql import reservations
from services.billing.adapters.sql.access import AccessQueries
from services.billing.adapters.sql.accounts import AccountQueries
from services.billing.adapters.sql.audit import AuditQueries
from services.billing.adapters.sql.ledger import LedgerQueries
from services.billing.adapters.sql.payments import PaymentQueries
from services.billing.adapters.sql.reporting import ReportingQueries
from services.billing.adapters.sql.reservations import ReservationQueries
from services.billing.adapters.tables import outbox
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import AccountKind


class BillingRepository:
    """Opens ledger transactions on the billing schema."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # System account ids never change once migrated; looked up once per process.
        self._system_accounts: dict[AccountKind, int] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LedgerTransaction]:
        """One database transaction: committed on success, rolled back on any error."""
        async with self._db.connection() as conn:
            yield LedgerTransaction(conn, self._system_accounts)

    @asynccontextmanager
    async def reservation(self) -> AsyncIterator[ReservationQueries]:
        """The transaction of a batch reservation, on a raw psycopg connection: the busiest write
        path without the SQLAlchemy layers (committed on success, rolled back on any error)."""
        async with self._db.raw_connection() as conn, conn.transaction():
            yield ReservationQueries(conn)

    async def available_balance(self, tenant_id: TenantId) -> int | None:
        """The tenant's available balance, read outside any transaction (None: no such tenant)."""
        async with self._db.raw_connection() as conn:
            return await reservations.available_balance(conn, tenant_id)


class LedgerTransaction:
    """One transaction on the billing schema, its queries grouped by topic."""

    def __init__(self, conn: AsyncConnection, system_accounts: dict[AccountKind, int]) -> None:
        self._conn = conn
        self.access = AccessQueries(conn)
        self.accounts = AccountQueries(conn, system_accounts)
        self.ledger = LedgerQueries(conn)
        self.payments = PaymentQueries(conn)
        self.reporting = ReportingQueries(conn)
        self.audit = AuditQueries(conn)

    async def add_events(self, envelopes: Sequence[Envelope]) -> None:
        """Writes events to the outbox in this transaction (the relay publishes them after commit)."""
        await add_events(self._conn, outbox, envelopes)
