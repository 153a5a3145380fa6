"""Ledger SQL: locked account and hold reads, transfers, ledger entries, balances, hold counters
(named query strings run on the psycopg connection of the transaction).

Locking discipline (deadlock-free, ADR-046; every row lock of billing is taken by a statement that
ends in this module's `ROW_LOCK`: here, and `lock_wallets` in `sql.reservations`, which locks only
the wallet rows of its join (`OF`) and reads the debt from them, ADR-165):
1. batch_holds rows first, ascending batch_id, in one statement (`lock_holds`);
2. then tenant account rows (`available`, `hold`, `debt`), ascending id, in one statement per
   transaction (`lock_balances`, `lock_wallets`, `lock_available`, `lock_wallet`). System accounts
   keep no balance and are never locked. A payment reversal (ADR-134) locks its payment row
   (`sql.reversals`) before the tenant's accounts; nothing else locks payment rows.
3. A reservation citing quotes locks them last, ascending id (`lock_quotes` in `sql.reservations`);
   only reservations lock quotes. Budgets take no lock: their use is read after the wallets are
   locked, which serialises every freeze of a tenant (ADR-122).
4. All with `FOR NO KEY UPDATE`, never `FOR UPDATE`: every insert of a transfer, ledger entry or
   hold line takes `FOR KEY SHARE` on the rows its foreign keys reference (accounts, holds), which
   conflicts with `FOR UPDATE` but not with `FOR NO KEY UPDATE`. With `FOR UPDATE`, two replicas
   posting to one wallet deadlocked: each inserted transfers referencing the wallet (key-share
   locks), then each waited to lock it for the other's key share. Balance updates change no key
   column, so `FOR NO KEY UPDATE` is all they need, and key-share locks order with nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.billing.adapters.sql.accounts import AccountBalance
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import LedgerEntry, Posting, RefType, Transfer
from services.billing.domain.settlement import BatchHold, OutcomeTally, SettlementStatus

# The row lock of every billing locking read (see the module's docstring for the order).
ROW_LOCK = "FOR NO KEY UPDATE"

# The statements of a chunk of outcomes (and of settlements) run on the psycopg connection of the
# transaction (`LedgerQueries._rows`) with their arrays in binary: psycopg's text format dumps
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
    CAST(%(transfer_ids)b AS bigint[]), CAST(%(entry_accounts)b AS bigint[]),
    CAST(%(entry_tenants)b AS uuid[]), CAST(%(entry_batches)b AS uuid[]),
    CAST(%(ref_types)b AS text[]), CAST(%(entry_ref_ids)b AS text[]),
    CAST(%(entry_amounts)b AS bigint[]), CAST(%(entry_balances)b AS bigint[])
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
_LOCK_WALLET = f"""
SELECT id, kind, balance FROM billing.accounts
WHERE tenant_id = %(tenant_id)s AND kind IN ('available', 'debt') ORDER BY id
{ROW_LOCK}"""
_ENSURE_DEBT_ACCOUNT = """
INSERT INTO billing.accounts (kind, tenant_id) VALUES ('debt', %(tenant_id)s)
ON CONFLICT (tenant_id) WHERE kind = 'debt' DO NOTHING"""
_LOCK_BALANCES = f"""
SELECT id, balance FROM billing.accounts WHERE id = ANY(CAST(%(ids)b AS bigint[])) ORDER BY id
{ROW_LOCK}"""
_HOLD_LINES = """
SELECT batch_id, model, unit_price FROM billing.batch_hold_lines
WHERE batch_id = ANY(CAST(%(ids)b AS uuid[]))"""

_FIND_TRANSFER = "SELECT ref_type, amount FROM billing.transfers WHERE key = :key"


async def driver_rows(conn: AsyncConnection, statement: str, params: Mapping[str, Any]) -> list[Any]:
    """Runs a statement on the psycopg connection of `conn`'s transaction; its rows (named tuples).

    For the statements of every outcome chunk: their arrays go in binary, without SQLAlchemy's layers.
    """
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] | None = raw.driver_connection
    assert driver is not None
    async with driver.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(statement, params)
        return await cursor.fetchall() if cursor.description is not None else []


def transfer_arrays(transfers: Sequence[Transfer]) -> dict[str, list[Any]]:
    """The columns every insert of transfers takes as arrays (`unnest`), one element per transfer:
    the ledger's own insert and the reservation's (which adds its holds to the same statement)."""
    return {
        "keys": [t.key for t in transfers],
        "ref_ids": [t.ref_id for t in transfers],
        "tenant_ids": [t.tenant_id for t in transfers],
        "batch_ids": [t.batch_id for t in transfers],
        "debits": [t.debit_account_id for t in transfers],
        "credits": [t.credit_account_id for t in transfers],
        "amounts": [t.amount for t in transfers],
    }


def entry_arrays(entries: Sequence[LedgerEntry]) -> dict[str, list[Any]]:
    """The columns every insert of ledger entries takes as arrays (`unnest`), one element per entry:
    the ledger's own insert (which adds transfer ids and ref types) and the reservation's (which adds
    the keys of its transfers, their ids being known only inside the statement)."""
    return {
        "entry_accounts": [e.account_id for e in entries],
        "entry_tenants": [e.tenant_id for e in entries],
        "entry_batches": [e.batch_id for e in entries],
        "entry_ref_ids": [e.ref_id for e in entries],
        "entry_amounts": [e.amount for e in entries],
        "entry_balances": [e.balance_after for e in entries],
    }


@dataclass(frozen=True)
class Wallet:
    """A tenant's available account and its debt account (None until it ever owed), locked.
    `owed` is what the debt account records as owed (minus its debit-normal balance)."""

    available: AccountBalance
    debt: AccountBalance | None

    @property
    def owed(self) -> int:
        return -self.debt.balance if self.debt is not None else 0


@dataclass(frozen=True)
class StoredTransfer:
    """What an existing transfer did, for answering a replayed request."""

    ref_type: RefType
    amount: int


class LedgerQueries(TransactionQueries):
    """The ledger's writes and locking reads, inside one transaction."""

    async def _rows(self, statement: str, params: Mapping[str, Any]) -> list[Any]:
        return await driver_rows(self._conn, statement, params)

    async def lock_available(self, tenant_id: TenantId) -> AccountBalance | None:
        """The tenant's available account, locked until the transaction ends (None: no such tenant)."""
        rows = await self._rows(_LOCK_AVAILABLE, {"tenant_id": tenant_id})
        return AccountBalance(rows[0].id, rows[0].balance) if rows else None

    async def lock_wallet(self, tenant_id: TenantId) -> Wallet | None:
        """The tenant's available and debt accounts, locked in id order (None: no such tenant)."""
        rows = await self._rows(_LOCK_WALLET, {"tenant_id": tenant_id})
        by_kind = {row.kind: AccountBalance(row.id, row.balance) for row in rows}
        available = by_kind.get("available")
        return Wallet(available, by_kind.get("debt")) if available is not None else None

    async def ensure_debt_account(self, tenant_id: TenantId) -> None:
        """Creates the tenant's debt account unless it has one (before `lock_wallet`)."""
        await self._rows(_ENSURE_DEBT_ACCOUNT, {"tenant_id": tenant_id})

    async def available_account_ids(self, tenant_ids: Collection[TenantId]) -> dict[TenantId, int]:
        rows = await self._rows(_AVAILABLE_ACCOUNT_IDS, {"tenant_ids": list(tenant_ids)})
        return {TenantId(row.tenant_id): row.id for row in rows}

    async def lock_balances(self, account_ids: Iterable[int]) -> dict[int, int]:
        """Locks tenant accounts in ascending id order and returns their balances."""
        rows = await self._rows(_LOCK_BALANCES, {"ids": sorted(account_ids)})
        return {row.id: row.balance for row in rows}

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
                **transfer_arrays(transfers),
                "ref_types": [t.ref_type.value for t in transfers],
                "models": [t.model for t in transfers],
            },
        )
        return {row.key: row.id for row in rows}

    async def find_transfer(self, key: str) -> StoredTransfer | None:
        row = (await self._conn.execute(text(_FIND_TRANSFER), {"key": key})).first()
        return StoredTransfer(RefType(row.ref_type), row.amount) if row else None

    async def write_posting(self, posting: Posting) -> None:
        """Inserts the entries of a posting and stores the closing balances of tracked accounts."""
        entries = posting.entries
        if entries:
            await self._rows(
                _INSERT_ENTRIES,
                {
                    "transfer_ids": [e.transfer_id for e in entries],
                    "ref_types": [e.ref_type.value for e in entries],
                    **entry_arrays(entries),
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
