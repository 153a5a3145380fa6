"""All billing SQL. Handlers open a `LedgerTransaction` and call its operations; the rules stay in
the domain.

Locking discipline (deadlock-free, ADR-046; every row lock of billing is taken by a statement of
this module that ends in `ROW_LOCK`):
1. batch_holds rows first, ascending batch_id, in one statement (`lock_holds`);
2. then tenant account rows (`available`, `hold`), ascending id, in one statement per transaction
   (`lock_balances`, `lock_wallets`, `lock_available`). System accounts keep no balance and are
   never locked.
3. Both with `FOR NO KEY UPDATE`, never `FOR UPDATE`: every insert of a transfer, ledger entry or
   hold line takes `FOR KEY SHARE` on the rows its foreign keys reference (accounts, holds), which
   conflicts with `FOR UPDATE` but not with `FOR NO KEY UPDATE`. With `FOR UPDATE`, two replicas
   posting to one wallet deadlocked: each inserted transfers referencing the wallet (key-share
   locks), then each waited to lock it for the other's key share. Balance updates change no key
   column, so `FOR NO KEY UPDATE` is all they need, and key-share locks order with nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Select, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.db import Database
from libs.messaging.contract import Envelope
from libs.messaging.outbox import add_events
from services.billing.adapters.tables import (
    accounts,
    admin_keys,
    api_keys,
    batch_hold_lines,
    batch_holds,
    ledger_entries,
    outbox,
    payment_events,
    payments,
    tenants,
    transfers,
    video_access_log,
)
from services.billing.domain.api_keys import AdminKeyInfo, AdminRole, ApiKeyInfo
from services.billing.domain.finance import BatchLedgerTotals, BatchTransferLine, ExportRow, TenantSummary
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import (
    AccountKind,
    LedgerEntry,
    Posting,
    RefType,
    StatementLine,
    Transfer,
    upfront_key,
)
from services.billing.domain.margins import CapturedVolume
from services.billing.domain.payments import EventOutcome, Payment, PaymentProvider
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.reconciliation import (
    AccountAudit,
    EffectCount,
    HoldAudit,
    LedgerAudit,
    TransferAudit,
)
from services.billing.domain.settlement import BatchHold, OutcomeTally, SettlementStatus
from services.billing.domain.statements import ModelUsage
from services.billing.domain.video_access import VideoAccess


@dataclass(frozen=True)
class AccountBalance:
    """A tenant account and its balance (locked when read with `lock_available`)."""

    id: int
    balance: int


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key (its hash only)."""

    key_id: uuid.UUID
    tenant_id: TenantId
    revoked: bool
    last_used_at: datetime | None


_API_KEY_INFO_COLUMNS = (
    api_keys.c.id,
    api_keys.c.tenant_id,
    api_keys.c.key_prefix,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)
_ADMIN_KEY_INFO_COLUMNS = (
    admin_keys.c.id,
    admin_keys.c.role,
    admin_keys.c.name,
    admin_keys.c.key_prefix,
    admin_keys.c.created_at,
    admin_keys.c.last_used_at,
    admin_keys.c.revoked_at,
)


def _api_key_info(row: Row[*tuple[Any, ...]]) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=row.id,
        tenant_id=row.tenant_id,
        prefix=row.key_prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _admin_key_info(row: Row[*tuple[Any, ...]]) -> AdminKeyInfo:
    return AdminKeyInfo(
        key_id=row.id,
        role=AdminRole(row.role),
        name=row.name,
        prefix=row.key_prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


@dataclass(frozen=True)
class PaymentEventRecord:
    """One payment-provider delivery as recorded (event_id None when it did not verify)."""

    provider: PaymentProvider
    event_id: str | None
    event_type: str
    outcome: EventOutcome
    detail: str = ""
    tenant_id: TenantId | None = None
    payment_reference: str | None = None


# Task outcomes recorded before transfers carried their model.
UNRECORDED_MODEL = "unrecorded"


@dataclass(frozen=True)
class StoredTransfer:
    """What an existing transfer did, for answering a replayed request."""

    ref_type: RefType
    amount: int


# Hold accounts, summed per tenant in the tenant list.
_hold_accounts = accounts.alias("hold_accounts")

# The row lock of every billing locking read (see the module's docstring for the order).
ROW_LOCK = "FOR NO KEY UPDATE"

# The statements of a chunk of outcomes (and of settlements) run on the psycopg connection of the
# transaction (`LedgerTransaction._rows`) with their arrays in binary: psycopg's text format dumps
# arrays element by element in Python, several times slower for the thousands of values a chunk
# of 500 outcomes carries.
_INSERT_TRANSFERS = """
INSERT INTO billing.transfers
    (key, ref_type, ref_id, tenant_id, batch_id, debit_account_id, credit_account_id, amount, model)
SELECT * FROM unnest(
    CAST(%(keys)b AS text[]), CAST(%(ref_types)b AS text[]), CAST(%(ref_ids)b AS text[]),
    CAST(%(tenant_ids)b AS uuid[]), CAST(%(batch_ids)b AS uuid[]),
    CAST(%(debits)b AS bigint[]), CAST(%(credits)b AS bigint[]), CAST(%(amounts)b AS bigint[]),
    CAST(%(models)b AS text[])
)
ON CONFLICT (key) DO NOTHING
RETURNING id, key
"""

_INSERT_ENTRIES = """
INSERT INTO billing.ledger_entries
    (transfer_id, account_id, tenant_id, batch_id, ref_type, ref_id, amount, balance_after)
SELECT * FROM unnest(
    CAST(%(transfer_ids)b AS bigint[]), CAST(%(account_ids)b AS bigint[]),
    CAST(%(tenant_ids)b AS uuid[]), CAST(%(batch_ids)b AS uuid[]),
    CAST(%(ref_types)b AS text[]), CAST(%(ref_ids)b AS text[]),
    CAST(%(amounts)b AS bigint[]), CAST(%(balances)b AS bigint[])
)
"""

_SET_BALANCES = """
UPDATE billing.accounts AS a SET balance = v.balance
FROM unnest(CAST(%(ids)b AS bigint[]), CAST(%(balances)b AS bigint[])) AS v(id, balance)
WHERE a.id = v.id
"""

# A group of reservations (`BillingHandlers.reserve`), four round trips whatever its size. The hold
# accounts of its batches, in batch id order (two transactions never wait on each other's index
# entries in opposite orders), except those that exist or whose tenant does not (both answer no
# row; a concurrent insert for the same batch waits on the unique index until that transaction
# ends); the group's wallets, locked in account id order; every accepted reservation posted by one
# statement (upfront transfers, their entries, which take the transfers' new ids, the closing
# balances, the batch holds and their price lines), in request order: transfer and entry ids
# follow it, so each wallet's `balance_after` chain reads in id order.
_CREATE_HOLD_ACCOUNTS = """
    INSERT INTO billing.accounts (kind, tenant_id, batch_id)
    SELECT 'hold', r.tenant_id, r.batch_id
    FROM unnest(CAST(%(tenant_ids)b AS uuid[]), CAST(%(batch_ids)b AS uuid[])) AS r(tenant_id, batch_id)
    WHERE EXISTS (SELECT 1 FROM billing.tenants WHERE id = r.tenant_id)
    ORDER BY r.batch_id
    ON CONFLICT (batch_id) WHERE kind = 'hold' DO NOTHING
    RETURNING id, batch_id
"""
_LOCK_WALLETS = f"""
    SELECT tenant_id, id, balance FROM billing.accounts
    WHERE kind = 'available' AND tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[]))
    ORDER BY id
    {ROW_LOCK}
"""
_DELETE_ACCOUNTS = "DELETE FROM billing.accounts WHERE id = ANY(CAST(%(ids)b AS bigint[]))"
_POST_RESERVATIONS = """
    WITH transfer AS (
        INSERT INTO billing.transfers
            (key, ref_type, ref_id, tenant_id, batch_id, debit_account_id, credit_account_id, amount, model)
        SELECT r.key, %(ref_type)s, r.ref_id, r.tenant_id, r.batch_id, r.debit, r.credit, r.amount, NULL
        FROM unnest(
            CAST(%(keys)b AS text[]), CAST(%(ref_ids)b AS text[]), CAST(%(tenant_ids)b AS uuid[]),
            CAST(%(batch_ids)b AS uuid[]), CAST(%(debits)b AS bigint[]), CAST(%(credits)b AS bigint[]),
            CAST(%(amounts)b AS bigint[])
        ) WITH ORDINALITY AS r(key, ref_id, tenant_id, batch_id, debit, credit, amount, n)
        ORDER BY r.n
        ON CONFLICT (key) DO NOTHING
        RETURNING id, key
    ), entries AS (
        INSERT INTO billing.ledger_entries
            (transfer_id, account_id, tenant_id, batch_id, ref_type, ref_id, amount, balance_after)
        SELECT transfer.id, e.account_id, e.tenant_id, e.batch_id, %(ref_type)s, e.ref_id, e.amount,
               e.balance_after
        FROM unnest(
            CAST(%(entry_keys)b AS text[]), CAST(%(entry_accounts)b AS bigint[]),
            CAST(%(entry_tenants)b AS uuid[]), CAST(%(entry_batches)b AS uuid[]),
            CAST(%(entry_ref_ids)b AS text[]), CAST(%(entry_amounts)b AS bigint[]),
            CAST(%(entry_balances)b AS bigint[])
        ) WITH ORDINALITY AS e(key, account_id, tenant_id, batch_id, ref_id, amount, balance_after, n)
        JOIN transfer ON transfer.key = e.key
        ORDER BY e.n
    ), balances AS (
        UPDATE billing.accounts AS a SET balance = v.balance
        FROM unnest(CAST(%(ids)b AS bigint[]), CAST(%(balances)b AS bigint[])) AS v(id, balance)
        WHERE a.id = v.id
    ), hold AS (
        INSERT INTO billing.batch_holds
            (batch_id, tenant_id, hold_account_id, item_count, frozen, available_before, available_after)
        SELECT * FROM unnest(
            CAST(%(batch_ids)b AS uuid[]), CAST(%(tenant_ids)b AS uuid[]), CAST(%(credits)b AS bigint[]),
            CAST(%(item_counts)b AS bigint[]), CAST(%(amounts)b AS bigint[]),
            CAST(%(befores)b AS bigint[]), CAST(%(afters)b AS bigint[])
        )
    ), lines AS (
        INSERT INTO billing.batch_hold_lines
            (batch_id, model, unit_price, duration_seconds, count, provider_cost_usd_micros)
        SELECT * FROM unnest(
            CAST(%(line_batches)b AS uuid[]), CAST(%(models)b AS text[]), CAST(%(unit_prices)b AS bigint[]),
            CAST(%(durations)b AS integer[]), CAST(%(counts)b AS bigint[]), CAST(%(costs)b AS bigint[])
        )
    )
    SELECT count(*) FROM transfer
"""


@dataclass(frozen=True)
class PlannedReservation:
    """One accepted reservation of a group: its upfront transfer, its hold and its frozen lines."""

    transfer: Transfer
    hold: BatchHold
    lines: tuple[QuoteLine, ...]
    provider_costs: Mapping[str, int]


_ADD_TALLIES = """
UPDATE billing.batch_holds AS h
SET captured = h.captured + v.captured,
    refunded = h.refunded + v.refunded,
    outcomes_applied = h.outcomes_applied + v.outcomes
FROM unnest(
    CAST(%(batch_ids)b AS uuid[]), CAST(%(captured)b AS bigint[]),
    CAST(%(refunded)b AS bigint[]), CAST(%(outcomes)b AS bigint[])
) AS v(batch_id, captured, refunded, outcomes)
WHERE h.batch_id = v.batch_id
"""


_RECORD_SETTLEMENTS = """
UPDATE billing.batch_holds AS h
SET released = v.released, settlement_status = v.status, settled_at = v.settled_at
FROM unnest(
    CAST(%(batch_ids)b AS uuid[]), CAST(%(released)b AS bigint[]), CAST(%(statuses)b AS text[]),
    CAST(%(settled_at)b AS timestamptz[])
) AS v(batch_id, released, status, settled_at)
WHERE h.batch_id = v.batch_id
"""


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
    async def reservation(self) -> AsyncIterator[ReservationTransaction]:
        """The transaction of a batch reservation, on a raw psycopg connection: the busiest write
        path without the SQLAlchemy layers (committed on success, rolled back on any error)."""
        async with self._db.raw_connection() as conn, conn.transaction():
            yield ReservationTransaction(conn)

    async def available_balance(self, tenant_id: TenantId) -> int | None:
        """The tenant's available balance, read outside any transaction (None: no such tenant)."""
        async with self._db.raw_connection() as conn:
            cursor = await conn.execute(
                "SELECT balance FROM billing.accounts WHERE kind = %s AND tenant_id = %s",
                (AccountKind.AVAILABLE.value, tenant_id),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else None


class ReservationTransaction:
    """What a batch reservation writes, inside one transaction on a raw psycopg connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def create_hold_accounts(self, batches: Mapping[BatchId, TenantId]) -> dict[BatchId, int]:
        """Creates the hold accounts of the batches (in batch id order); answers those created.

        A batch missing from the answer has its hold account already, or no such tenant. A
        concurrent creation of one of them makes this wait until that transaction ends.
        """
        ordered = sorted(batches)
        cursor = await self._conn.execute(
            _CREATE_HOLD_ACCOUNTS,
            {"tenant_ids": [batches[batch_id] for batch_id in ordered], "batch_ids": ordered},
        )
        return {BatchId(row[1]): int(row[0]) for row in await cursor.fetchall()}

    async def lock_wallets(self, tenant_ids: Iterable[TenantId]) -> dict[TenantId, AccountBalance]:
        """The tenants' available accounts, locked in account id order until the transaction ends."""
        cursor = await self._conn.execute(_LOCK_WALLETS, {"tenant_ids": sorted(set(tenant_ids))})
        return {TenantId(row[0]): AccountBalance(int(row[1]), int(row[2])) for row in await cursor.fetchall()}

    async def delete_accounts(self, account_ids: Collection[int]) -> None:
        """Deletes hold accounts this transaction created for reservations it refused."""
        if account_ids:
            await self._conn.execute(_DELETE_ACCOUNTS, {"ids": list(account_ids)})

    async def post_reservations(self, planned: Sequence[PlannedReservation], posting: Posting) -> int:
        """Writes the reservations of a group in one statement, in request order.

        `posting` holds the entries of all their transfers and the closing balances of the
        accounts they touch. Returns how many transfers were inserted: fewer than planned means a
        transfer key existed, and the caller must roll back.
        """
        if not planned:
            return 0
        by_key = {item.transfer.key: item.transfer for item in planned}
        entries = posting.entries
        if any(entry.ref_id != by_key[_entry_key(entry)].ref_id for entry in entries):
            raise ValueError("a reservation posts the entries of its own transfers only")
        ids = sorted(posting.balances)
        lines = [(item.hold.batch_id, line, item.provider_costs) for item in planned for line in item.lines]
        inserted = await self._conn.execute(
            _POST_RESERVATIONS,
            {
                "ref_type": RefType.BATCH_UPFRONT.value,
                "keys": [item.transfer.key for item in planned],
                "ref_ids": [item.transfer.ref_id for item in planned],
                "tenant_ids": [item.transfer.tenant_id for item in planned],
                "batch_ids": [item.hold.batch_id for item in planned],
                "debits": [item.transfer.debit_account_id for item in planned],
                "credits": [item.transfer.credit_account_id for item in planned],
                "amounts": [item.transfer.amount for item in planned],
                "item_counts": [item.hold.item_count for item in planned],
                "befores": [item.hold.available_before for item in planned],
                "afters": [item.hold.available_after for item in planned],
                "entry_keys": [_entry_key(entry) for entry in entries],
                "entry_accounts": [entry.account_id for entry in entries],
                "entry_tenants": [entry.tenant_id for entry in entries],
                "entry_batches": [entry.batch_id for entry in entries],
                "entry_ref_ids": [entry.ref_id for entry in entries],
                "entry_amounts": [entry.amount for entry in entries],
                "entry_balances": [entry.balance_after for entry in entries],
                "ids": ids,
                "balances": [posting.balances[account_id] for account_id in ids],
                "line_batches": [batch_id for batch_id, _, _ in lines],
                "models": [line.model for _, line, _ in lines],
                "unit_prices": [line.unit_price for _, line, _ in lines],
                "durations": [line.duration_seconds for _, line, _ in lines],
                "counts": [line.count for _, line, _ in lines],
                "costs": [costs.get(line.model, 0) for _, line, costs in lines],
            },
        )
        row = await inserted.fetchone()
        return int(row[0]) if row is not None else 0


def _entry_key(entry: LedgerEntry) -> str:
    # A reservation's entries carry its batch id; its transfer key is made from it.
    assert entry.batch_id is not None
    return upfront_key(entry.batch_id)


# The holds of some batches, in batch id order (locked: every writer of holds locks in this order).
_READ_HOLDS = """
SELECT * FROM billing.batch_holds WHERE batch_id = ANY(CAST(%(ids)b AS uuid[])) ORDER BY batch_id"""
_LOCK_HOLDS = f"{_READ_HOLDS}\n{ROW_LOCK}"
_AVAILABLE_ACCOUNT_IDS = """
SELECT tenant_id, id FROM billing.accounts
WHERE kind = 'available' AND tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[]))"""
_LOCK_AVAILABLE = f"""
SELECT id, balance FROM billing.accounts WHERE kind = 'available' AND tenant_id = %(tenant_id)s
{ROW_LOCK}"""
_LOCK_BALANCES = f"""
SELECT id, balance FROM billing.accounts WHERE id = ANY(CAST(%(ids)b AS bigint[])) ORDER BY id
{ROW_LOCK}"""
_HOLD_LINES = """
SELECT batch_id, model, unit_price FROM billing.batch_hold_lines
WHERE batch_id = ANY(CAST(%(ids)b AS uuid[]))"""


class LedgerTransaction:
    """The billing operations available inside one transaction."""

    def __init__(self, conn: AsyncConnection, system_accounts: dict[AccountKind, int]) -> None:
        self._conn = conn
        self._system_accounts = system_accounts

    async def _rows(self, statement: str, params: Mapping[str, Any]) -> list[Any]:
        """Runs a statement on the psycopg connection of this transaction; its rows."""
        raw = await self._conn.get_raw_connection()
        driver: psycopg.AsyncConnection[Any] | None = raw.driver_connection
        assert driver is not None
        async with driver.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(statement, params)
            return await cursor.fetchall() if cursor.description is not None else []

    # Tenants and API keys.

    async def insert_tenant(self, tenant_id: TenantId, name: str) -> None:
        """Creates a tenant and its available account."""
        await self._conn.execute(insert(tenants).values(id=tenant_id, name=name))
        await self._conn.execute(
            insert(accounts).values(kind=AccountKind.AVAILABLE.value, tenant_id=tenant_id)
        )

    async def tenant_exists(self, tenant_id: TenantId) -> bool:
        found = await self._conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id))
        return found.first() is not None

    async def insert_api_key(
        self, key_id: uuid.UUID, tenant_id: TenantId, key_hash: str, prefix: str
    ) -> bool:
        """Stores a key hash; False when that hash is already registered."""
        inserted = await self._conn.execute(
            pg_insert(api_keys)
            .values(id=key_id, tenant_id=tenant_id, key_hash=key_hash, key_prefix=prefix)
            .on_conflict_do_nothing(index_elements=[api_keys.c.key_hash])
            .returning(api_keys.c.id)
        )
        return inserted.first() is not None

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = (
            await self._conn.execute(
                select(
                    api_keys.c.id, api_keys.c.tenant_id, api_keys.c.revoked_at, api_keys.c.last_used_at
                ).where(api_keys.c.key_hash == key_hash)
            )
        ).first()
        if row is None:
            return None
        return ApiKeyRecord(
            key_id=row.id,
            tenant_id=TenantId(row.tenant_id),
            revoked=row.revoked_at is not None,
            last_used_at=row.last_used_at,
        )

    async def record_api_key_use(self, key_id: uuid.UUID, used_at: datetime) -> None:
        await self._conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=used_at))

    async def list_api_keys(self, tenant_id: TenantId) -> list[ApiKeyInfo]:
        """The tenant's keys, oldest first (hashes are never read)."""
        rows = await self._conn.execute(
            select(*_API_KEY_INFO_COLUMNS)
            .where(api_keys.c.tenant_id == tenant_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [_api_key_info(row) for row in rows]

    async def get_api_key(self, key_id: uuid.UUID, tenant_id: TenantId | None) -> ApiKeyInfo | None:
        """One key, only if it belongs to `tenant_id` (any tenant when None)."""
        query = select(*_API_KEY_INFO_COLUMNS).where(api_keys.c.id == key_id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        row = (await self._conn.execute(query)).first()
        return None if row is None else _api_key_info(row)

    async def revoke_api_key(self, key_id: uuid.UUID, revoked_at: datetime) -> None:
        """Marks a key revoked; the first revocation time is kept."""
        await self._conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )

    async def insert_admin_key(
        self, key_id: uuid.UUID, key_hash: str, prefix: str, role: AdminRole, name: str
    ) -> None:
        await self._conn.execute(
            insert(admin_keys).values(
                id=key_id, key_hash=key_hash, key_prefix=prefix, role=role.value, name=name
            )
        )

    async def find_admin_key(self, key_hash: str) -> AdminKeyInfo | None:
        query = select(*_ADMIN_KEY_INFO_COLUMNS).where(admin_keys.c.key_hash == key_hash)
        row = (await self._conn.execute(query)).first()
        return None if row is None else _admin_key_info(row)

    async def get_admin_key(self, key_id: uuid.UUID) -> AdminKeyInfo | None:
        row = (
            await self._conn.execute(select(*_ADMIN_KEY_INFO_COLUMNS).where(admin_keys.c.id == key_id))
        ).first()
        return None if row is None else _admin_key_info(row)

    async def list_admin_keys(self) -> list[AdminKeyInfo]:
        rows = await self._conn.execute(
            select(*_ADMIN_KEY_INFO_COLUMNS).order_by(admin_keys.c.created_at, admin_keys.c.id)
        )
        return [_admin_key_info(row) for row in rows]

    async def revoke_admin_key(self, key_id: uuid.UUID, revoked_at: datetime) -> None:
        await self._conn.execute(
            update(admin_keys)
            .where(admin_keys.c.id == key_id, admin_keys.c.revoked_at.is_(None))
            .values(revoked_at=revoked_at)
        )

    async def record_admin_key_use(self, key_id: uuid.UUID, used_at: datetime) -> None:
        await self._conn.execute(
            update(admin_keys).where(admin_keys.c.id == key_id).values(last_used_at=used_at)
        )

    # Video access audit log.

    async def insert_video_access(self, access: VideoAccess) -> int:
        """Appends one attempt; returns its id."""
        inserted = await self._conn.execute(
            insert(video_access_log)
            .values(
                occurred_at=access.occurred_at,
                tenant_id=access.tenant_id,
                key_id=access.key_id,
                client_address=access.client_address,
                batch_id=access.batch_id,
                task_id=access.task_id,
                mode=access.mode,
                via=access.via,
                result=access.result,
            )
            .returning(video_access_log.c.id)
        )
        return int(inserted.scalar_one())

    async def list_video_access(
        self, tenant_id: str, batch_id: str, before_id: int | None, limit: int
    ) -> list[VideoAccess]:
        """Attempts newest first, optionally of one tenant and/or batch, ids below `before_id`."""
        log = video_access_log.c
        query = select(video_access_log).order_by(log.id.desc()).limit(limit)
        if tenant_id:
            query = query.where(log.tenant_id == tenant_id)
        if batch_id:
            query = query.where(log.batch_id == batch_id)
        if before_id is not None:
            query = query.where(log.id < before_id)
        rows = await self._conn.execute(query)
        return [
            VideoAccess(
                tenant_id=row.tenant_id,
                key_id=row.key_id,
                client_address=row.client_address,
                batch_id=row.batch_id,
                task_id=row.task_id,
                mode=row.mode,
                via=row.via,
                result=row.result,
                occurred_at=row.occurred_at,
                access_id=row.id,
            )
            for row in rows
        ]

    # Accounts.

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

    async def lock_available(self, tenant_id: TenantId) -> AccountBalance | None:
        """The tenant's available account, locked until the transaction ends (None: no such tenant)."""
        rows = await self._rows(_LOCK_AVAILABLE, {"tenant_id": tenant_id})
        return AccountBalance(rows[0].id, rows[0].balance) if rows else None

    async def available(self, tenant_id: TenantId) -> AccountBalance | None:
        """The tenant's available account without locking it (None: no such tenant)."""
        row = (await self._conn.execute(self._available_of(tenant_id))).first()
        return AccountBalance(row.id, row.balance) if row else None

    async def available_account_ids(self, tenant_ids: Collection[TenantId]) -> dict[TenantId, int]:
        rows = await self._rows(_AVAILABLE_ACCOUNT_IDS, {"tenant_ids": list(tenant_ids)})
        return {TenantId(row.tenant_id): row.id for row in rows}

    async def held_total(self, tenant_id: TenantId) -> int:
        """What all of the tenant's batch holds still hold."""
        total = await self._conn.execute(
            select(func.coalesce(func.sum(accounts.c.balance), 0)).where(
                accounts.c.kind == AccountKind.HOLD.value, accounts.c.tenant_id == tenant_id
            )
        )
        return int(total.scalar_one())

    async def lock_balances(self, account_ids: Iterable[int]) -> dict[int, int]:
        """Locks tenant accounts in ascending id order and returns their balances."""
        rows = await self._rows(_LOCK_BALANCES, {"ids": sorted(account_ids)})
        return {row.id: row.balance for row in rows}

    # Transfers and entries.

    async def insert_transfers(self, transfers: Sequence[Transfer]) -> dict[str, int]:
        """Inserts transfers whose key is new; returns {key: transfer id} of those inserted only.

        A key that exists (or repeats within `transfers`) is skipped by the unique constraint; a
        concurrent transaction inserting the same key makes this one wait for its outcome.
        """
        if not transfers:
            return {}
        rows = await self._rows(
            _INSERT_TRANSFERS,
            {
                "keys": [t.key for t in transfers],
                "ref_types": [t.ref_type.value for t in transfers],
                "ref_ids": [t.ref_id for t in transfers],
                "tenant_ids": [t.tenant_id for t in transfers],
                "batch_ids": [t.batch_id for t in transfers],
                "debits": [t.debit_account_id for t in transfers],
                "credits": [t.credit_account_id for t in transfers],
                "amounts": [t.amount for t in transfers],
                "models": [t.model for t in transfers],
            },
        )
        return {row.key: row.id for row in rows}

    async def find_transfer(self, key: str) -> StoredTransfer | None:
        row = (
            await self._conn.execute(
                text("SELECT ref_type, amount FROM billing.transfers WHERE key = :key"), {"key": key}
            )
        ).first()
        return StoredTransfer(RefType(row.ref_type), row.amount) if row else None

    async def write_posting(self, posting: Posting) -> None:
        """Inserts the entries of a posting and stores the closing balances of tracked accounts."""
        entries = posting.entries
        if entries:
            await self._rows(
                _INSERT_ENTRIES,
                {
                    "transfer_ids": [e.transfer_id for e in entries],
                    "account_ids": [e.account_id for e in entries],
                    "tenant_ids": [e.tenant_id for e in entries],
                    "batch_ids": [e.batch_id for e in entries],
                    "ref_types": [e.ref_type.value for e in entries],
                    "ref_ids": [e.ref_id for e in entries],
                    "amounts": [e.amount for e in entries],
                    "balances": [e.balance_after for e in entries],
                },
            )
        if posting.balances:
            ids = sorted(posting.balances)
            await self._rows(_SET_BALANCES, {"ids": ids, "balances": [posting.balances[i] for i in ids]})

    # Batch holds.

    async def find_hold(self, batch_id: BatchId) -> BatchHold | None:
        holds = await self._holds([batch_id], lock=False)
        return holds.get(batch_id)

    async def lock_holds(self, batch_ids: Iterable[BatchId]) -> dict[BatchId, BatchHold]:
        """Locks the holds of `batch_ids` (ascending batch id) and returns those that exist."""
        return await self._holds(sorted(set(batch_ids)), lock=True)

    async def _holds(self, batch_ids: Sequence[BatchId], *, lock: bool) -> dict[BatchId, BatchHold]:
        if not batch_ids:
            return {}
        # Raw statements: every outcome chunk and settlement locks its holds (SQLAlchemy's IN with
        # one bind per id cost more than the statements themselves).
        rows = await self._rows(_LOCK_HOLDS if lock else _READ_HOLDS, {"ids": list(batch_ids)})
        if not rows:
            return {}
        priced: dict[BatchId, set[tuple[str, int]]] = {}
        for line in await self._rows(_HOLD_LINES, {"ids": [row.batch_id for row in rows]}):
            priced.setdefault(BatchId(line.batch_id), set()).add((line.model, line.unit_price))
        return {
            BatchId(row.batch_id): _hold_from_row(
                row._asdict(), frozenset(priced.get(BatchId(row.batch_id), ()))
            )
            for row in rows
        }

    async def add_outcome_tallies(self, tallies: Mapping[BatchId, OutcomeTally]) -> None:
        """Adds freshly applied outcomes to the counters of their batches (one row update each)."""
        if not tallies:
            return
        batch_ids = sorted(tallies)
        await self._rows(
            _ADD_TALLIES,
            {
                "batch_ids": batch_ids,
                "captured": [tallies[b].captured for b in batch_ids],
                "refunded": [tallies[b].refunded for b in batch_ids],
                "outcomes": [tallies[b].outcomes for b in batch_ids],
            },
        )

    async def record_settlements(self, holds: Sequence[BatchHold]) -> None:
        """Stores the settlement (released, status, time) of each hold, in one statement."""
        if not holds:
            return
        await self._rows(
            _RECORD_SETTLEMENTS,
            {
                "batch_ids": [hold.batch_id for hold in holds],
                "released": [hold.released for hold in holds],
                "statuses": [hold.settlement_status.value for hold in holds],
                "settled_at": [hold.settled_at for hold in holds],
            },
        )

    async def add_events(self, envelopes: Sequence[Envelope]) -> None:
        """Writes events to the outbox in this transaction (the relay publishes them after commit)."""
        await add_events(self._conn, outbox, envelopes)

    # The customer's statement.

    async def statement(
        self, tenant_id: TenantId, batch_id: BatchId | None, before_entry_id: int | None, limit: int
    ) -> list[StatementLine]:
        """Entries of the tenant's available account, newest first."""
        available_id = (
            select(accounts.c.id)
            .where(accounts.c.kind == AccountKind.AVAILABLE.value, accounts.c.tenant_id == tenant_id)
            .scalar_subquery()
        )
        query = (
            select(
                ledger_entries.c.id,
                ledger_entries.c.ref_type,
                ledger_entries.c.ref_id,
                ledger_entries.c.batch_id,
                ledger_entries.c.amount,
                ledger_entries.c.balance_after,
                ledger_entries.c.created_at,
            )
            .where(ledger_entries.c.account_id == available_id)
            .order_by(ledger_entries.c.id.desc())
            .limit(limit)
        )
        if batch_id is not None:
            query = query.where(ledger_entries.c.batch_id == batch_id)
        if before_entry_id is not None:
            query = query.where(ledger_entries.c.id < before_entry_id)
        rows = await self._conn.execute(query)
        return [
            StatementLine(
                entry_id=row.id,
                ref_type=RefType(row.ref_type),
                ref_id=row.ref_id,
                batch_id=BatchId(row.batch_id) if row.batch_id else None,
                credits_delta=row.amount,
                balance_after=row.balance_after,
                created_at=row.created_at,
            )
            for row in rows
        ]

    # Finance reads.

    async def tenant_summaries(self, after_position: int | None, limit: int) -> list[TenantSummary]:
        """Tenants in creation order (by their available account id) with both balances."""
        held = (
            select(func.coalesce(func.sum(_hold_accounts.c.balance), 0))
            .where(
                _hold_accounts.c.kind == AccountKind.HOLD.value, _hold_accounts.c.tenant_id == tenants.c.id
            )
            .scalar_subquery()
        )
        query = (
            select(
                accounts.c.id.label("position"),
                tenants.c.id,
                tenants.c.name,
                tenants.c.created_at,
                accounts.c.balance,
                held.label("held"),
            )
            .join(accounts, accounts.c.tenant_id == tenants.c.id)
            .where(accounts.c.kind == AccountKind.AVAILABLE.value)
            .order_by(accounts.c.id)
            .limit(limit)
        )
        if after_position is not None:
            query = query.where(accounts.c.id > after_position)
        rows = await self._conn.execute(query)
        return [
            TenantSummary(
                position=row.position,
                tenant_id=TenantId(row.id),
                name=row.name,
                available_credits=row.balance,
                held_credits=int(row.held),
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def batch_ledger_totals(self, batch_id: BatchId) -> BatchLedgerTotals | None:
        """Transfer totals per ref type of a batch (None: billing never reserved it)."""
        hold = (
            await self._conn.execute(
                select(batch_holds.c.tenant_id, batch_holds.c.settlement_status, accounts.c.balance)
                .join(accounts, accounts.c.id == batch_holds.c.hold_account_id)
                .where(batch_holds.c.batch_id == batch_id)
            )
        ).first()
        if hold is None:
            return None
        sums = await self._conn.execute(
            select(transfers.c.ref_type, func.sum(transfers.c.amount).label("total"))
            .where(transfers.c.batch_id == batch_id)
            .group_by(transfers.c.ref_type)
        )
        return BatchLedgerTotals(
            batch_id=batch_id,
            tenant_id=TenantId(hold.tenant_id),
            settlement_status=hold.settlement_status,
            held_credits=hold.balance,
            by_ref_type={RefType(row.ref_type): int(row.total) for row in sums},
        )

    async def batch_transfers(
        self, batch_id: BatchId, after_transfer_id: int | None, limit: int
    ) -> list[BatchTransferLine]:
        """A batch's transfers in the order they happened."""
        debit = accounts.alias("debit")
        credit = accounts.alias("credit")
        query = (
            select(
                transfers.c.id,
                transfers.c.ref_type,
                transfers.c.ref_id,
                transfers.c.amount,
                transfers.c.created_at,
                debit.c.kind.label("from_kind"),
                credit.c.kind.label("to_kind"),
            )
            .join(debit, debit.c.id == transfers.c.debit_account_id)
            .join(credit, credit.c.id == transfers.c.credit_account_id)
            .where(transfers.c.batch_id == batch_id)
            .order_by(transfers.c.id)
            .limit(limit)
        )
        if after_transfer_id is not None:
            query = query.where(transfers.c.id > after_transfer_id)
        rows = await self._conn.execute(query)
        return [
            BatchTransferLine(
                transfer_id=row.id,
                ref_type=RefType(row.ref_type),
                ref_id=row.ref_id,
                amount=row.amount,
                from_account=AccountKind(row.from_kind),
                to_account=AccountKind(row.to_kind),
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def export_rows(
        self,
        tenant_id: TenantId | None,
        created_from: datetime | None,
        created_to: datetime | None,
        after_entry_id: int,
        limit: int,
    ) -> list[ExportRow]:
        """Up to `limit` entries after `after_entry_id` in id order (a tenant: its available account only)."""
        query = (
            select(
                ledger_entries.c.id,
                ledger_entries.c.transfer_id,
                ledger_entries.c.created_at,
                accounts.c.tenant_id,
                accounts.c.kind,
                ledger_entries.c.batch_id,
                ledger_entries.c.ref_type,
                ledger_entries.c.ref_id,
                ledger_entries.c.amount,
                ledger_entries.c.balance_after,
            )
            .join(accounts, accounts.c.id == ledger_entries.c.account_id)
            .where(ledger_entries.c.id > after_entry_id)
            .order_by(ledger_entries.c.id)
            .limit(limit)
        )
        if tenant_id is not None:
            query = query.where(
                accounts.c.kind == AccountKind.AVAILABLE.value, accounts.c.tenant_id == tenant_id
            )
        if created_from is not None:
            query = query.where(ledger_entries.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(ledger_entries.c.created_at < created_to)
        rows = await self._conn.execute(query)
        return [
            ExportRow(
                entry_id=row.id,
                transfer_id=row.transfer_id,
                created_at=row.created_at,
                tenant_id=TenantId(row.tenant_id) if row.tenant_id else None,
                account=AccountKind(row.kind),
                batch_id=BatchId(row.batch_id) if row.batch_id else None,
                ref_type=RefType(row.ref_type),
                ref_id=row.ref_id,
                amount=row.amount,
                balance_after=row.balance_after,
            )
            for row in rows
        ]

    # Payments, statements and margins.

    async def insert_payment_event(self, event: PaymentEventRecord) -> bool:
        """Records one payment-provider delivery; False when its (verified) event id is already recorded.

        A concurrent transaction recording the same event id makes this one wait for its outcome.
        """
        inserted = await self._conn.execute(
            pg_insert(payment_events)
            .values(
                provider=event.provider.value,
                event_id=event.event_id,
                event_type=event.event_type,
                outcome=event.outcome.value,
                detail=event.detail,
                tenant_id=event.tenant_id,
                payment_reference=event.payment_reference,
            )
            .on_conflict_do_nothing()
            .returning(payment_events.c.id)
        )
        return inserted.first() is not None

    async def set_payment_event_outcome(self, event: PaymentEventRecord) -> None:
        """Stores what was finally done with a recorded (verified) event."""
        await self._conn.execute(
            update(payment_events)
            .where(
                payment_events.c.provider == event.provider.value, payment_events.c.event_id == event.event_id
            )
            .values(
                outcome=event.outcome.value,
                detail=event.detail,
                tenant_id=event.tenant_id,
                payment_reference=event.payment_reference,
            )
        )

    async def insert_payment(self, payment: Payment) -> int | None:
        """Records a payment; None when this payment (reference or payment intent) is already recorded."""
        inserted = await self._conn.execute(
            pg_insert(payments)
            .values(
                tenant_id=payment.tenant_id,
                provider=payment.provider.value,
                reference=payment.reference,
                payment_intent=payment.payment_intent,
                pack_id=payment.pack_id,
                credits=payment.credits,
                amount_usd_cents=payment.amount_usd_cents,
            )
            .on_conflict_do_nothing()
            .returning(payments.c.id)
        )
        payment_id = inserted.scalar_one_or_none()
        return int(payment_id) if payment_id is not None else None

    async def link_payment_transfer(self, payment_id: int, transfer_id: int) -> None:
        await self._conn.execute(
            update(payments).where(payments.c.id == payment_id).values(transfer_id=transfer_id)
        )

    async def available_movements(
        self, account_id: int, start: datetime, end: datetime
    ) -> tuple[dict[RefType, int], dict[RefType, int]]:
        """Signed sums per ref type of an account's entries before `start`, and within [start, end)."""
        rows = await self._conn.execute(
            select(
                ledger_entries.c.ref_type,
                func.coalesce(
                    func.sum(ledger_entries.c.amount).filter(ledger_entries.c.created_at < start), 0
                ),
                func.coalesce(
                    func.sum(ledger_entries.c.amount).filter(ledger_entries.c.created_at >= start), 0
                ),
            )
            .where(ledger_entries.c.account_id == account_id, ledger_entries.c.created_at < end)
            .group_by(ledger_entries.c.ref_type)
        )
        before: dict[RefType, int] = {}
        during: dict[RefType, int] = {}
        for ref_type, sum_before, sum_during in rows:
            if sum_before:
                before[RefType(ref_type)] = int(sum_before)
            if sum_during:
                during[RefType(ref_type)] = int(sum_during)
        return before, during

    async def model_usage(self, tenant_id: TenantId, start: datetime, end: datetime) -> list[ModelUsage]:
        """Task outcomes of the tenant applied within [start, end), per model."""
        captured = transfers.c.ref_type == RefType.BATCH_CAPTURE.value
        refunded = transfers.c.ref_type == RefType.BATCH_REFUND.value
        rows = await self._conn.execute(
            select(
                transfers.c.model,
                func.count().filter(captured),
                func.count().filter(refunded),
                func.coalesce(func.sum(transfers.c.amount).filter(captured), 0),
                func.coalesce(func.sum(transfers.c.amount).filter(refunded), 0),
            )
            .where(
                transfers.c.tenant_id == tenant_id,
                transfers.c.ref_type.in_([RefType.BATCH_CAPTURE.value, RefType.BATCH_REFUND.value]),
                transfers.c.created_at >= start,
                transfers.c.created_at < end,
            )
            .group_by(transfers.c.model)
        )
        return [
            ModelUsage(
                model=model or UNRECORDED_MODEL,
                videos_delivered=int(delivered),
                videos_refunded=int(refunds),
                credits_captured=int(captured_credits),
                credits_refunded=int(refunded_credits),
            )
            for model, delivered, refunds, captured_credits, refunded_credits in rows
        ]

    async def captured_volumes(self, start: datetime, end: datetime) -> list[CapturedVolume]:
        """Captures within [start, end) per model, with the provider cost frozen with their batch."""
        rows = await self._conn.execute(
            select(
                transfers.c.model,
                func.count(),
                func.sum(transfers.c.amount),
                func.sum(batch_hold_lines.c.provider_cost_usd_micros),
            )
            .select_from(
                transfers.outerjoin(
                    batch_hold_lines,
                    (batch_hold_lines.c.batch_id == transfers.c.batch_id)
                    & (batch_hold_lines.c.model == transfers.c.model)
                    # A model frozen at several prices (durations) has one line per price.
                    & (batch_hold_lines.c.unit_price == transfers.c.amount),
                )
            )
            .where(
                transfers.c.ref_type == RefType.BATCH_CAPTURE.value,
                transfers.c.created_at >= start,
                transfers.c.created_at < end,
            )
            .group_by(transfers.c.model)
        )
        return [
            CapturedVolume(
                model=model or UNRECORDED_MODEL,
                videos=int(videos),
                credits=int(credits),
                provider_cost_usd_micros=int(cost or 0),
            )
            for model, videos, credits, cost in rows
        ]

    async def existing_holds(self, batch_ids: Collection[BatchId]) -> set[BatchId]:
        """Those of `batch_ids` that have a hold."""
        rows = await self._conn.execute(
            select(batch_holds.c.batch_id).where(batch_holds.c.batch_id.in_(list(batch_ids)))
        )
        return {BatchId(row.batch_id) for row in rows}

    async def ledger_audit(self) -> LedgerAudit:
        """The figures reconciliation checks, aggregated in the database (suspicious rows only)."""
        ledger_sum = (
            await self._conn.execute(text("SELECT coalesce(sum(amount), 0) FROM billing.ledger_entries"))
        ).scalar_one()
        transfer_rows = await self._conn.execute(text(_SUSPICIOUS_TRANSFERS))
        account_rows = await self._conn.execute(text(_ACCOUNT_AUDIT))
        effect_rows = await self._conn.execute(text(_REPEATED_EFFECTS))
        hold_rows = (await self._conn.execute(text(_HOLD_AUDIT))).all()
        moved: dict[BatchId, dict[RefType, int]] = {}
        for row in await self._conn.execute(text(_BATCH_TRANSFER_TOTALS)):
            moved.setdefault(BatchId(row.batch_id), {})[RefType(row.ref_type)] = int(row.total)
        return LedgerAudit(
            ledger_sum=int(ledger_sum),
            transfers=[
                TransferAudit(row.id, row.key, int(row.entry_count), int(row.entries_sum))
                for row in transfer_rows
            ],
            accounts=[
                AccountAudit(
                    account_id=row.id,
                    kind=AccountKind(row.kind),
                    tenant_id=TenantId(row.tenant_id) if row.tenant_id else None,
                    balance=row.balance,
                    entries_sum=int(row.entries_sum),
                    last_balance_after=row.last_balance_after,
                )
                for row in account_rows
            ],
            repeated_effects=[
                EffectCount(RefType(row.ref_type), row.ref_id, int(row.n)) for row in effect_rows
            ],
            holds=[
                HoldAudit(
                    batch_id=BatchId(row.batch_id),
                    tenant_id=TenantId(row.tenant_id),
                    settlement_status=row.settlement_status,
                    frozen=row.frozen,
                    captured=row.captured,
                    refunded=row.refunded,
                    released=row.released,
                    held=row.held,
                    transferred=moved.get(BatchId(row.batch_id), {}),
                )
                for row in hold_rows
            ],
        )


_SUSPICIOUS_TRANSFERS = """
    SELECT t.id, t.key, count(e.id) AS entry_count, coalesce(sum(e.amount), 0) AS entries_sum
    FROM billing.transfers t LEFT JOIN billing.ledger_entries e ON e.transfer_id = t.id
    GROUP BY t.id HAVING count(e.id) <> 2 OR coalesce(sum(e.amount), 0) <> 0
"""

_ACCOUNT_AUDIT = """
    SELECT a.id, a.kind, a.tenant_id, a.balance, coalesce(s.total, 0) AS entries_sum,
        (SELECT e.balance_after FROM billing.ledger_entries e WHERE e.account_id = a.id
         ORDER BY e.id DESC LIMIT 1) AS last_balance_after
    FROM billing.accounts a
    LEFT JOIN (SELECT account_id, sum(amount) AS total FROM billing.ledger_entries GROUP BY account_id) s
        ON s.account_id = a.id
    WHERE a.kind IN ('available', 'hold')
"""

# The unique key already makes a repeated key impossible; this catches one effect under two keys.
_REPEATED_EFFECTS = """
    SELECT ref_type, ref_id, count(*) AS n FROM billing.transfers
    WHERE ref_type IN ('batch_upfront', 'batch_settle', 'topup')
    GROUP BY ref_type, tenant_id, ref_id HAVING count(*) > 1
    UNION ALL
    SELECT min(ref_type), ref_id, count(*) FROM billing.transfers
    WHERE ref_type IN ('batch_capture', 'batch_refund')
    GROUP BY ref_id HAVING count(*) > 1
"""

_HOLD_AUDIT = """
    SELECT h.batch_id, h.tenant_id, h.settlement_status, h.frozen, h.captured, h.refunded, h.released,
        a.balance AS held
    FROM billing.batch_holds h JOIN billing.accounts a ON a.id = h.hold_account_id
    ORDER BY h.batch_id
"""

_BATCH_TRANSFER_TOTALS = """
    SELECT batch_id, ref_type, sum(amount) AS total FROM billing.transfers
    WHERE batch_id IS NOT NULL GROUP BY batch_id, ref_type
"""


def _hold_from_row(values: Mapping[str, Any], line_prices: frozenset[tuple[str, int]]) -> BatchHold:
    models = [model for model, _ in line_prices]
    # A model frozen at one price keeps its per-model price; several prices go by the task's.
    unit_prices = {model: price for model, price in line_prices if models.count(model) == 1}
    return BatchHold(
        batch_id=BatchId(values["batch_id"]),
        tenant_id=TenantId(values["tenant_id"]),
        hold_account_id=values["hold_account_id"],
        item_count=values["item_count"],
        frozen=values["frozen"],
        available_before=values["available_before"],
        available_after=values["available_after"],
        unit_prices=unit_prices,
        line_prices=line_prices,
        captured=values["captured"],
        refunded=values["refunded"],
        outcomes_applied=values["outcomes_applied"],
        released=values["released"],
        settlement_status=SettlementStatus(values["settlement_status"]),
        settled_at=values["settled_at"],
    )
