"""Monthly summaries of the ledger kept by triggers, and held credits found through pending holds
(issue 30, ADR-152 and ADR-153).

- `account_month_totals`: per tenant account (available, hold and debt: the system accounts would be
  one hot row for every tenant's transaction), month (UTC) and ref type, the number and sum of
  its entries. A statement's opening balance and movements are read from it: months, not entries.
- `tenant_month_outcomes`: per month, tenant, model and outcome kind (capture or refund), the
  number of transfers, their credits and, for captures, the provider cost frozen with the batch.
  A statement's usage by model and the month's margins are read from it.

Both are written by statement-level triggers on the inserts of entries and transfers, so in the
same transaction as the movement, whatever code path moves the money; each upsert groups the
statement's new rows first (one row update per account and month touched, in key order). Their
updated columns are in no index, so the updates are HOT (no index churn, little to vacuum).
Existing rows are summarized here once.

`ix_transfers_batch_id_id` replaces `ix_transfers_batch_id`: a batch's transfers in id order.

`ix_batch_holds_pending_by_tenant`: what a tenant holds is the balance of its pending holds (a
settled hold holds nothing, I1), found through this index instead of every hold it ever had.

Reconciliation by month (ADR-154): `reconciled_months` lists the months a clean reconciliation
sealed; a run checks the ledger from the first unsealed month on, found through BRIN indexes on
`created_at` of entries and transfers (append-only tables whose rows arrive in time order: a few
pages of index, nothing to update per row beyond its range) and the holds settled since through
`ix_batch_holds_settled_at`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

S = "billing"
_MONTH = "(date_trunc('month', {} AT TIME ZONE 'UTC'))::date"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {S}.account_month_totals (
            account_id bigint NOT NULL,
            month date NOT NULL,
            ref_type text NOT NULL,
            entries bigint NOT NULL,
            amount bigint NOT NULL,
            CONSTRAINT pk_account_month_totals PRIMARY KEY (account_id, month, ref_type)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE {S}.tenant_month_outcomes (
            month date NOT NULL,
            tenant_id uuid NOT NULL,
            model text NOT NULL,
            ref_type text NOT NULL,
            transfers bigint NOT NULL,
            amount bigint NOT NULL,
            provider_cost_usd_micros bigint NOT NULL,
            CONSTRAINT pk_tenant_month_outcomes PRIMARY KEY (month, tenant_id, model, ref_type)
        )"""
    )
    entries_month = _MONTH.format("e.created_at")
    transfers_month = _MONTH.format("n.created_at")
    # The statement's new entries of tenant accounts (system accounts have a fixed kind).
    op.execute(
        f"""
        CREATE FUNCTION {S}.summarize_ledger_entries() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.account_month_totals AS t (account_id, month, ref_type, entries, amount)
            SELECT e.account_id, {entries_month}, e.ref_type, count(*), sum(e.amount)
            FROM new_entries e
            WHERE e.account_id NOT IN (
                SELECT id FROM {S}.accounts WHERE kind IN ('revenue', 'grants', 'payments'))
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (account_id, month, ref_type) DO UPDATE
            SET entries = t.entries + excluded.entries, amount = t.amount + excluded.amount;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER ledger_entries_summarized AFTER INSERT ON {S}.ledger_entries
        REFERENCING NEW TABLE AS new_entries
        FOR EACH STATEMENT EXECUTE FUNCTION {S}.summarize_ledger_entries()"""
    )
    # A capture's provider cost: its batch's line of that model at that price (frozen at accept).
    op.execute(
        f"""
        CREATE FUNCTION {S}.summarize_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.tenant_month_outcomes AS t
                (month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros)
            SELECT {transfers_month}, n.tenant_id, coalesce(n.model, ''), n.ref_type, count(*), sum(n.amount),
                coalesce(sum((SELECT max(l.provider_cost_usd_micros) FROM {S}.batch_hold_lines l
                              WHERE n.ref_type = 'batch_capture' AND l.batch_id = n.batch_id
                                AND l.model = n.model AND l.unit_price = n.amount)), 0)
            FROM new_transfers n
            WHERE n.ref_type IN ('batch_capture', 'batch_refund')
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (month, tenant_id, model, ref_type) DO UPDATE
            SET transfers = t.transfers + excluded.transfers, amount = t.amount + excluded.amount,
                provider_cost_usd_micros = t.provider_cost_usd_micros + excluded.provider_cost_usd_micros;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER transfers_summarized AFTER INSERT ON {S}.transfers
        REFERENCING NEW TABLE AS new_transfers
        FOR EACH STATEMENT EXECUTE FUNCTION {S}.summarize_outcomes()"""
    )
    # What existed before the triggers.
    op.execute(
        f"""
        INSERT INTO {S}.account_month_totals (account_id, month, ref_type, entries, amount)
        SELECT e.account_id, {entries_month}, e.ref_type, count(*), sum(e.amount)
        FROM {S}.ledger_entries e
        WHERE e.account_id NOT IN (SELECT id FROM {S}.accounts WHERE kind IN ('revenue', 'grants', 'payments'))
        GROUP BY 1, 2, 3"""
    )
    op.execute(
        f"""
        INSERT INTO {S}.tenant_month_outcomes
            (month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros)
        SELECT {transfers_month}, n.tenant_id, coalesce(n.model, ''), n.ref_type, count(*), sum(n.amount),
            coalesce(sum((SELECT max(l.provider_cost_usd_micros) FROM {S}.batch_hold_lines l
                          WHERE n.ref_type = 'batch_capture' AND l.batch_id = n.batch_id
                            AND l.model = n.model AND l.unit_price = n.amount)), 0)
        FROM {S}.transfers n
        WHERE n.ref_type IN ('batch_capture', 'batch_refund')
        GROUP BY 1, 2, 3, 4"""
    )
    op.execute(
        f"CREATE INDEX ix_batch_holds_pending_by_tenant ON {S}.batch_holds (tenant_id)"
        " WHERE settlement_status = 'pending'"
    )
    op.execute(
        f"""
        CREATE TABLE {S}.reconciled_months (
            month date PRIMARY KEY,
            reconciled_at timestamptz NOT NULL DEFAULT now(),
            entries bigint NOT NULL,
            transfers bigint NOT NULL
        )"""
    )
    op.execute(
        f"CREATE INDEX ix_ledger_entries_created_at_brin ON {S}.ledger_entries USING brin (created_at)"
    )
    op.execute(f"CREATE INDEX ix_transfers_created_at_brin ON {S}.transfers USING brin (created_at)")
    op.execute(f"CREATE INDEX ix_batch_holds_settled_at ON {S}.batch_holds (settled_at)")
    # A batch's transfers in id order: its billing tab pages them; with (batch_id) alone the
    # planner walked the primary key and filtered (1.2 s at 5,000,000 transfers).
    op.execute(f"CREATE INDEX ix_transfers_batch_id_id ON {S}.transfers (batch_id, id)")
    op.execute(f"DROP INDEX {S}.ix_transfers_batch_id")


def downgrade() -> None:
    op.execute(f"CREATE INDEX ix_transfers_batch_id ON {S}.transfers (batch_id)")
    op.execute(f"DROP INDEX {S}.ix_transfers_batch_id_id")
    op.execute(f"DROP INDEX {S}.ix_batch_holds_settled_at")
    op.execute(f"DROP INDEX {S}.ix_transfers_created_at_brin")
    op.execute(f"DROP INDEX {S}.ix_ledger_entries_created_at_brin")
    op.execute(f"DROP TABLE {S}.reconciled_months")
    op.execute(f"DROP INDEX {S}.ix_batch_holds_pending_by_tenant")
    op.execute(f"DROP TRIGGER transfers_summarized ON {S}.transfers")
    op.execute(f"DROP TRIGGER ledger_entries_summarized ON {S}.ledger_entries")
    op.execute(f"DROP FUNCTION {S}.summarize_outcomes()")
    op.execute(f"DROP FUNCTION {S}.summarize_ledger_entries()")
    op.execute(f"DROP TABLE {S}.tenant_month_outcomes")
    op.execute(f"DROP TABLE {S}.account_month_totals")
