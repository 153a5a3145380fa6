"""SQL of a group of batch reservations (named query strings on a raw psycopg connection).

Reservations lock wallets by `ROW_LOCK`, in the order the `ledger` module's docstring sets out.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from libs.messaging.contract import Envelope
from services.billing.adapters.sql.accounts import AccountBalance
from services.billing.adapters.sql.ledger import ROW_LOCK, entry_arrays, transfer_arrays
from services.billing.adapters.sql.spend_control import QUOTE_COLUMNS, quote_from_row
from services.billing.domain.alerts import AlertThresholds
from services.billing.domain.auto_top_up import TopUpTrigger
from services.billing.domain.budgets import (
    UNATTRIBUTED,
    Attribution,
    BudgetKey,
    BudgetLedger,
    BudgetScope,
    Period,
    use_by_budget,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import AccountKind, LedgerEntry, Posting, RefType, Transfer, upfront_key
from services.billing.domain.packs import CreditPack
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.quotes import StoredQuote
from services.billing.domain.settlement import BatchHold

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
# The group's wallets, locked, with what the freezes must know of their tenants (one round trip):
# what each owes (`owed`, ADR-134: kept on the wallet row by the debt's own writes, 0018, so it is
# read at the row's latest version like the balance, ADR-165), its alert thresholds (ADR-125), its
# enabled auto top-up (ADR-135) and whether it has any budget (ADR-122). Only the wallet rows are
# locked; the settings are read as of the statement's start, as a read after the lock would see
# them had they changed just after it (they take no wallet lock). What other freezes wrote under
# the lock (the month's top-up purchases, the budgets' use) is read after it, and only for tenants
# that have an auto top-up or a budget.
_LOCK_WALLETS = f"""
    SELECT w.tenant_id, w.id, w.balance, w.owed, a.tenant_id IS NOT NULL AS has_alerts,
        a.low_balance_credits, a.budget_percent, s.tenant_id IS NOT NULL AS auto_top_up,
        s.threshold_credits, s.pack_id, s.max_per_month,
        EXISTS (SELECT 1 FROM billing.budgets b WHERE b.tenant_id = w.tenant_id) AS has_budgets
    FROM billing.accounts w
    LEFT JOIN billing.alert_thresholds a ON a.tenant_id = w.tenant_id
    LEFT JOIN billing.auto_top_up_settings s ON s.tenant_id = w.tenant_id AND s.enabled
        AND s.payment_method_id IS NOT NULL
    WHERE w.kind = 'available' AND w.tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[]))
    ORDER BY w.id
    {ROW_LOCK} OF w
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
            (batch_id, tenant_id, hold_account_id, item_count, frozen, available_before, available_after,
             api_key_id, project, budget_period)
        SELECT * FROM unnest(
            CAST(%(batch_ids)b AS uuid[]), CAST(%(tenant_ids)b AS uuid[]), CAST(%(credits)b AS bigint[]),
            CAST(%(item_counts)b AS bigint[]), CAST(%(amounts)b AS bigint[]),
            CAST(%(befores)b AS bigint[]), CAST(%(afters)b AS bigint[]),
            CAST(%(api_key_ids)b AS uuid[]), CAST(%(projects)b AS text[]), CAST(%(periods)b AS date[])
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

# The caps of the group's tenants, then the net spend of this period by (tenant, key, project) of
# those tenants that have any cap: read after their wallets are locked, so every committed freeze
# of theirs is counted (ADR-122).
_BUDGETS = """
    SELECT tenant_id, scope, scope_id, monthly_credits FROM billing.budgets
    WHERE tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[]))
"""
_BUDGET_USE = """
    SELECT tenant_id, COALESCE(api_key_id::text, '') AS api_key_id, COALESCE(project, '') AS project,
           sum(frozen - refunded - released) AS spent
    FROM billing.batch_holds
    WHERE tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[])) AND budget_period = %(period)s
    GROUP BY 1, 2, 3
"""

# The quotes the group cites, locked (after the wallets; only reservations lock quotes), and
# those honoured, marked with their batch in the same transaction.
_LOCK_QUOTES = f"""
    SELECT {QUOTE_COLUMNS} FROM billing.quotes WHERE id = ANY(CAST(%(ids)b AS uuid[])) ORDER BY id
    {ROW_LOCK}
"""
_USE_QUOTES = """
    UPDATE billing.quotes AS q SET batch_id = v.batch_id, used_at = %(now)s
    FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(batch_ids)b AS uuid[])) AS v(id, batch_id)
    WHERE q.id = v.id AND q.batch_id IS NULL
"""

# The automatic purchases of this month of the tenants with an auto top-up (after `lock_wallets`:
# every freeze that adds one holds the wallet lock, so the count is final).
_TOP_UPS_BOUGHT = """
    SELECT tenant_id, count(*) FROM billing.auto_top_ups
    WHERE tenant_id = ANY(CAST(%(tenant_ids)b AS uuid[])) AND period = %(period)s AND status <> 'failed'
    GROUP BY 1
"""
_ADD_PURCHASES = """
    INSERT INTO billing.auto_top_ups (id, tenant_id, crossing_key, pack_id, credits, amount_usd_cents, period)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT DO NOTHING
"""
_ADD_EVENTS = """
    INSERT INTO billing.outbox (message_id, routing_key, message_type, body, headers)
    VALUES (%s, %s, %s, %s, %s)
"""

_AVAILABLE_BALANCE = "SELECT balance FROM billing.accounts WHERE kind = %s AND tenant_id = %s"


@dataclass(frozen=True)
class TenantState:
    """A tenant of the group, read with its wallet lock: its thresholds (None: no alerts), what it
    owes, and its auto top-up (None: off) with its purchases this month."""

    thresholds: AlertThresholds | None
    debt: int
    top_up: TopUpTrigger | None


@dataclass(frozen=True)
class LockedWallet:
    """A tenant's available account, locked by a group of reservations, with its tenant's state and
    whether it has any budget (whose use must then be read under the lock)."""

    account: AccountBalance
    state: TenantState
    has_budgets: bool


@dataclass(frozen=True)
class PlannedPurchase:
    """An auto top-up purchase a crossing asks for (ADR-135)."""

    purchase_id: uuid.UUID
    tenant_id: TenantId
    crossing_key: str
    pack: CreditPack
    period: Period


@dataclass(frozen=True)
class PlannedReservation:
    """One accepted reservation of a group: its upfront transfer, its hold and its frozen lines."""

    transfer: Transfer
    hold: BatchHold
    lines: tuple[QuoteLine, ...]
    provider_costs: Mapping[str, int]
    # Whose budgets the freeze counts against, and in which month.
    attribution: Attribution = UNATTRIBUTED
    period: Period | None = None


async def available_balance(conn: psycopg.AsyncConnection[Any], tenant_id: TenantId) -> int | None:
    """The tenant's available balance, read outside any transaction (None: no such tenant)."""
    cursor = await conn.execute(_AVAILABLE_BALANCE, (AccountKind.AVAILABLE.value, tenant_id))
    row = await cursor.fetchone()
    return int(row[0]) if row is not None else None


class ReservationQueries:
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

    async def lock_wallets(
        self, tenant_ids: Iterable[TenantId], period: Period
    ) -> dict[TenantId, LockedWallet]:
        """The tenants' available accounts, locked in account id order until the transaction ends,
        with what their freezes must know of them (`period`: the month of the freeze)."""
        async with self._conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_LOCK_WALLETS, {"tenant_ids": sorted(set(tenant_ids))})
            rows = await cursor.fetchall()
        topping_up = [row["tenant_id"] for row in rows if row["auto_top_up"]]
        bought: dict[TenantId, int] = {}
        if topping_up:
            counted = await self._conn.execute(
                _TOP_UPS_BOUGHT, {"tenant_ids": sorted(topping_up), "period": period.start}
            )
            bought = {TenantId(row[0]): int(row[1]) for row in await counted.fetchall()}
        return {TenantId(row["tenant_id"]): _locked_wallet(row, bought) for row in rows}

    async def budget_ledgers(
        self, tenant_ids: Collection[TenantId], period: Period
    ) -> dict[TenantId, BudgetLedger]:
        """The caps of the tenants that have any, with their use of `period` so far.

        Call it after `lock_wallets`: the wallet locks are what make the use read here final
        until this transaction commits.
        """
        if not tenant_ids:
            return {}
        cursor = await self._conn.execute(_BUDGETS, {"tenant_ids": sorted(set(tenant_ids))})
        caps: dict[TenantId, dict[BudgetKey, int]] = {}
        for tenant_id, scope, scope_id, monthly_credits in await cursor.fetchall():
            caps.setdefault(TenantId(tenant_id), {})[BudgetKey(BudgetScope(scope), scope_id)] = int(
                monthly_credits
            )
        if not caps:
            return {}
        cursor = await self._conn.execute(_BUDGET_USE, {"tenant_ids": sorted(caps), "period": period.start})
        spend: dict[TenantId, list[tuple[str, str, int]]] = {}
        for tenant_id, api_key_id, project, spent in await cursor.fetchall():
            spend.setdefault(TenantId(tenant_id), []).append((api_key_id, project, int(spent)))
        return {
            tenant_id: BudgetLedger(tenant_caps, use_by_budget(spend.get(tenant_id, ())), period)
            for tenant_id, tenant_caps in caps.items()
        }

    async def add_purchases(self, purchases: Sequence[PlannedPurchase]) -> None:
        """Writes the auto top-up purchases of this group's crossings (the top-up loop's outbox); one
        open purchase per tenant at most (a unique index: a second one is skipped)."""
        if not purchases:
            return
        async with self._conn.cursor() as cursor:
            await cursor.executemany(
                _ADD_PURCHASES,
                [
                    (
                        p.purchase_id,
                        p.tenant_id,
                        p.crossing_key,
                        p.pack.pack_id,
                        p.pack.credits,
                        p.pack.price_usd_cents,
                        p.period.start,
                    )
                    for p in purchases
                ],
            )

    async def add_events(self, envelopes: Sequence[Envelope]) -> None:
        """Writes events to billing's outbox in this transaction (the relay publishes them)."""
        if not envelopes:
            return
        async with self._conn.cursor() as cursor:
            await cursor.executemany(
                _ADD_EVENTS,
                [
                    (e.message_id, e.routing_key, e.message_type, e.body, Jsonb(dict(e.headers)))
                    for e in envelopes
                ],
            )

    async def lock_quotes(self, quote_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, StoredQuote]:
        """The cited quotes that exist, locked (id order) until the transaction ends."""
        if not quote_ids:
            return {}
        async with self._conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_LOCK_QUOTES, {"ids": sorted(set(quote_ids))})
            return {row["id"]: quote_from_row(row) for row in await cursor.fetchall()}

    async def use_quotes(self, used: Mapping[uuid.UUID, BatchId], now: datetime) -> int:
        """Records each quote's batch; answers how many were still unused (all, under the lock)."""
        if not used:
            return 0
        ids = sorted(used)
        cursor = await self._conn.execute(
            _USE_QUOTES, {"ids": ids, "batch_ids": [used[quote_id] for quote_id in ids], "now": now}
        )
        return cursor.rowcount

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
                # The holds are inserted by the same statement: batch ids, tenant ids, hold
                # accounts (`credits`) and frozen amounts are their transfers'.
                **transfer_arrays([item.transfer for item in planned]),
                "item_counts": [item.hold.item_count for item in planned],
                "befores": [item.hold.available_before for item in planned],
                "afters": [item.hold.available_after for item in planned],
                "api_key_ids": [_uuid_or_none(item.attribution.api_key_id) for item in planned],
                "projects": [item.attribution.project or None for item in planned],
                "periods": [item.period.start if item.period else None for item in planned],
                "entry_keys": [_entry_key(entry) for entry in entries],
                **entry_arrays(entries),
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


def _locked_wallet(row: Mapping[str, Any], bought: Mapping[TenantId, int]) -> LockedWallet:
    low, percent = row["low_balance_credits"], row["budget_percent"]
    tenant_id = TenantId(row["tenant_id"])
    state = TenantState(
        thresholds=(
            AlertThresholds(None if low is None else int(low), None if percent is None else int(percent))
            if row["has_alerts"]
            else None
        ),
        debt=int(row["owed"]),
        top_up=(
            TopUpTrigger(
                int(row["threshold_credits"]),
                row["pack_id"],
                int(row["max_per_month"]),
                bought.get(tenant_id, 0),
            )
            if row["auto_top_up"]
            else None
        ),
    )
    return LockedWallet(AccountBalance(int(row["id"]), int(row["balance"])), state, bool(row["has_budgets"]))


def _uuid_or_none(value: str) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _entry_key(entry: LedgerEntry) -> str:
    # A reservation's entries carry its batch id; its transfer key is made from it.
    assert entry.batch_id is not None
    return upfront_key(entry.batch_id)
