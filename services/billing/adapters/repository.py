"""The billing unit of work: opens a transaction and hands use cases its queries, one object per topic.

The SQL itself lives in `adapters/sql/<topic>.py`; the lock order every writer follows is in the
docstring of `adapters/sql/ledger.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.billing.adapters.sql import limits, reservations
from services.billing.adapters.sql.access import AccessQueries
from services.billing.adapters.sql.accounts import AccountQueries
from services.billing.adapters.sql.activity import ActivityQueries
from services.billing.adapters.sql.audit import AuditQueries
from services.billing.adapters.sql.auto_top_up import AutoTopUpQueries
from services.billing.adapters.sql.checkpoints import CheckpointQueries
from services.billing.adapters.sql.console_access import ConsoleAccessQueries
from services.billing.adapters.sql.console_settings import ConsoleSettingsQueries
from services.billing.adapters.sql.ledger import LedgerQueries
from services.billing.adapters.sql.payments import PaymentQueries
from services.billing.adapters.sql.provider_spend import ProviderSpendQueries
from services.billing.adapters.sql.reporting import ReportingQueries
from services.billing.adapters.sql.reservations import ReservationQueries
from services.billing.adapters.sql.reversals import ReversalQueries
from services.billing.adapters.sql.spend_control import SpendControlQueries
from services.billing.adapters.sql.usage import UsageQueries
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

    async def draw_rate_tokens(
        self, bucket: str, *, wanted: int, rate: float, burst: int, returned: int = 0
    ) -> limits.BucketDraw:
        """One draw from a shared token bucket, one autocommit statement (on every leased request)."""
        async with self._db.raw_connection() as conn:
            return await limits.draw_tokens(
                conn, bucket, wanted=wanted, rate=rate, burst=burst, returned=returned
            )

    async def sweep_rate_buckets(self) -> int:
        """Deletes the token buckets that are full again; returns how many."""
        async with self._db.raw_connection() as conn:
            return await limits.sweep_full_buckets(conn)

    async def available_balance(self, tenant_id: TenantId) -> int | None:
        """The tenant's available balance, read outside any transaction (None: no such tenant)."""
        async with self._db.raw_connection() as conn:
            return await reservations.available_balance(conn, tenant_id)


class LedgerTransaction:
    """One transaction on the billing schema, its queries grouped by topic."""

    def __init__(self, conn: AsyncConnection, system_accounts: dict[AccountKind, int]) -> None:
        self._conn = conn
        self._system_accounts = system_accounts

    # Built on first use: most transactions touch one or two topics.

    @cached_property
    def access(self) -> AccessQueries:
        """Tenants, API keys, operator keys, the video access log."""
        return AccessQueries(self._conn)

    @cached_property
    def console_access(self) -> ConsoleAccessQueries:
        """Console users, invites, sessions, failed sign-ins."""
        return ConsoleAccessQueries(self._conn)

    @cached_property
    def activity(self) -> ActivityQueries:
        """Tenants' activity logs (written in the transaction of each audited change)."""
        return ActivityQueries(self._conn)

    @cached_property
    def accounts(self) -> AccountQueries:
        """Account reads that take no lock."""
        return AccountQueries(self._conn, self._system_accounts)

    @cached_property
    def ledger(self) -> LedgerQueries:
        """Locking reads, transfers, entries, balances, hold counters."""
        return LedgerQueries(self._conn)

    @cached_property
    def payments(self) -> PaymentQueries:
        """Payments and payment-provider deliveries."""
        return PaymentQueries(self._conn)

    @cached_property
    def provider_spend(self) -> ProviderSpendQueries:
        """What the providers bill us per task, as task outcomes reported it (ADR-144)."""
        return ProviderSpendQueries(self._conn)

    @cached_property
    def reporting(self) -> ReportingQueries:
        """Statements, finance pages, exports, margins."""
        return ReportingQueries(self._conn)

    @cached_property
    def usage(self) -> UsageQueries:
        """The console's usage sums and payment receipts."""
        return UsageQueries(self._conn)

    @cached_property
    def console_settings(self) -> ConsoleSettingsQueries:
        """A tenant's console settings."""
        return ConsoleSettingsQueries(self._conn)

    @cached_property
    def spend_control(self) -> SpendControlQueries:
        """Budgets, their use, stored quotes."""
        return SpendControlQueries(self._conn)

    @cached_property
    def reversals(self) -> ReversalQueries:
        """Refunded and disputed payments, and debts (ADR-134)."""
        return ReversalQueries(self._conn)

    @cached_property
    def auto_top_up(self) -> AutoTopUpQueries:
        """Automatic top-up settings and purchases (ADR-135)."""
        return AutoTopUpQueries(self._conn)

    @cached_property
    def audit(self) -> AuditQueries:
        """The reconciliation audit's aggregates."""
        return AuditQueries(self._conn)

    @cached_property
    def checkpoints(self) -> CheckpointQueries:
        """Reconciliation checkpoints (ADR-159)."""
        return CheckpointQueries(self._conn)

    async def add_events(self, envelopes: Sequence[Envelope]) -> None:
        """Writes events to the outbox in this transaction (the relay publishes them after commit)."""
        await add_events(self._conn, outbox, envelopes)
