"""Incremental reconciliation (issue 30, ADR-159): a checkpoint finer than the month.

- `reconciliation_checkpoints`: one row per clean run, its `cutoff` (the run's start less an hour
  of grace: every transaction that began before it has committed). The next run reads the ledger
  from the latest cutoff on; none (the operator deleted them): a full run.
- `reconciled_account_totals` and `reconciled_tenant_outcomes`: what the monthly totals (ADR-152)
  held at the cutoff, as verified: a run checks each key it touches (stored total = checkpointed +
  what the slice adds) and each account that moved (balance = checkpointed sum + new entries).
- `ledger_amendments`: the rows the application never changes once written, changed anyway (an
  entry or transfer updated or deleted, a settled hold updated), and a tenant account's balance
  set to something its last entry's `balance_after` does not say. The next run re-reads exactly
  those accounts, transfers and holds in full. The triggers on entries, transfers and holds fire
  only on what the application never does; the one on accounts runs on every balance update (one
  index probe per account per statement: the money path's cost, ADR-159).

`reconciled_months` (ADR-154) is superseded and dropped; the months it sealed become the first
checkpoint (their end; the figures are their monthly totals, which the sealing run verified), so
the first run after the upgrade reads what it read before, not all of history.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

S = "billing"
_TRACKED = "('available', 'hold', 'debt')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {S}.reconciliation_checkpoints (
            id bigserial PRIMARY KEY,
            cutoff timestamptz NOT NULL,
            reconciled_at timestamptz NOT NULL DEFAULT now(),
            entries_read bigint NOT NULL,
            transfers_read bigint NOT NULL
        )"""
    )
    op.execute(
        f"CREATE INDEX ix_reconciliation_checkpoints_cutoff ON {S}.reconciliation_checkpoints (cutoff)"
    )
    op.execute(
        f"""
        CREATE TABLE {S}.reconciled_account_totals (
            account_id bigint NOT NULL,
            month date NOT NULL,
            ref_type text NOT NULL,
            entries bigint NOT NULL,
            amount bigint NOT NULL,
            CONSTRAINT pk_reconciled_account_totals PRIMARY KEY (account_id, month, ref_type)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE {S}.reconciled_tenant_outcomes (
            month date NOT NULL,
            tenant_id uuid NOT NULL,
            model text NOT NULL,
            ref_type text NOT NULL,
            transfers bigint NOT NULL,
            amount bigint NOT NULL,
            CONSTRAINT pk_reconciled_tenant_outcomes PRIMARY KEY (tenant_id, month, model, ref_type)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE {S}.ledger_amendments (
            id bigserial PRIMARY KEY,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            source text NOT NULL,
            account_id bigint,
            transfer_id bigint,
            batch_id uuid,
            tenant_id uuid,
            month date
        )"""
    )
    op.execute(f"CREATE INDEX ix_ledger_amendments_recorded_at ON {S}.ledger_amendments (recorded_at)")
    month = "(date_trunc('month', {}.created_at AT TIME ZONE 'UTC'))::date"
    # An entry updated or deleted: its account and transfer (before and after, if moved).
    op.execute(
        f"""
        CREATE FUNCTION {S}.note_amended_entry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.ledger_amendments (source, account_id, transfer_id, tenant_id, month)
            VALUES ('ledger_entries', OLD.account_id, OLD.transfer_id, OLD.tenant_id, {month.format("OLD")});
            IF TG_OP = 'UPDATE' THEN
                INSERT INTO {S}.ledger_amendments (source, account_id, transfer_id, tenant_id, month)
                VALUES ('ledger_entries', NEW.account_id, NEW.transfer_id, NEW.tenant_id, {month.format("NEW")});
            END IF;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER ledger_entries_amended AFTER UPDATE OR DELETE ON {S}.ledger_entries
        FOR EACH ROW EXECUTE FUNCTION {S}.note_amended_entry()"""
    )
    op.execute(
        f"""
        CREATE FUNCTION {S}.note_amended_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.ledger_amendments (source, transfer_id, batch_id, tenant_id, month)
            VALUES ('transfers', OLD.id, OLD.batch_id, OLD.tenant_id, {month.format("OLD")});
            IF TG_OP = 'UPDATE' THEN
                INSERT INTO {S}.ledger_amendments (source, transfer_id, batch_id, tenant_id, month)
                VALUES ('transfers', NEW.id, NEW.batch_id, NEW.tenant_id, {month.format("NEW")});
            END IF;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER transfers_amended AFTER UPDATE OR DELETE ON {S}.transfers
        FOR EACH ROW EXECUTE FUNCTION {S}.note_amended_transfer()"""
    )
    # A settled hold is never updated by the application (its counters are final, I1).
    op.execute(
        f"""
        CREATE FUNCTION {S}.note_amended_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.ledger_amendments (source, batch_id, tenant_id)
            VALUES ('batch_holds', OLD.batch_id, OLD.tenant_id);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER batch_holds_amended AFTER UPDATE OR DELETE ON {S}.batch_holds
        FOR EACH ROW WHEN (OLD.settlement_status <> 'pending') EXECUTE FUNCTION {S}.note_amended_hold()"""
    )
    # Every writer inserts an account's entries before (or in the statement that) it sets the
    # balance, so after the statement the balance is its last entry's balance_after (0 without any).
    op.execute(
        f"""
        CREATE FUNCTION {S}.note_balance_off_the_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.ledger_amendments (source, account_id, tenant_id)
            SELECT 'accounts', n.id, n.tenant_id FROM new_accounts n
            WHERE n.kind IN {_TRACKED}
              AND n.balance <> coalesce(
                  (SELECT e.balance_after FROM {S}.ledger_entries e WHERE e.account_id = n.id
                   ORDER BY e.id DESC LIMIT 1), 0);
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER accounts_balance_checked AFTER UPDATE ON {S}.accounts
        REFERENCING NEW TABLE AS new_accounts
        FOR EACH STATEMENT EXECUTE FUNCTION {S}.note_balance_off_the_ledger()"""
    )
    op.execute(
        f"""
        INSERT INTO {S}.reconciled_account_totals (account_id, month, ref_type, entries, amount)
        SELECT account_id, month, ref_type, entries, amount FROM {S}.account_month_totals
        WHERE month < (SELECT (max(month) + interval '1 month')::date FROM {S}.reconciled_months)"""
    )
    op.execute(
        f"""
        INSERT INTO {S}.reconciled_tenant_outcomes (month, tenant_id, model, ref_type, transfers, amount)
        SELECT month, tenant_id, model, ref_type, transfers, amount FROM {S}.tenant_month_outcomes
        WHERE month < (SELECT (max(month) + interval '1 month')::date FROM {S}.reconciled_months)"""
    )
    op.execute(
        f"""
        INSERT INTO {S}.reconciliation_checkpoints (cutoff, entries_read, transfers_read)
        SELECT (max(month) + interval '1 month')::timestamp AT TIME ZONE 'UTC', sum(entries), sum(transfers)
        FROM {S}.reconciled_months HAVING count(*) > 0"""
    )
    op.execute(f"DROP TABLE {S}.reconciled_months")


def downgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE {S}.reconciled_months (
            month date PRIMARY KEY,
            reconciled_at timestamptz NOT NULL DEFAULT now(),
            entries bigint NOT NULL,
            transfers bigint NOT NULL
        )"""
    )
    op.execute(f"DROP TRIGGER accounts_balance_checked ON {S}.accounts")
    op.execute(f"DROP TRIGGER batch_holds_amended ON {S}.batch_holds")
    op.execute(f"DROP TRIGGER transfers_amended ON {S}.transfers")
    op.execute(f"DROP TRIGGER ledger_entries_amended ON {S}.ledger_entries")
    op.execute(f"DROP FUNCTION {S}.note_balance_off_the_ledger()")
    op.execute(f"DROP FUNCTION {S}.note_amended_hold()")
    op.execute(f"DROP FUNCTION {S}.note_amended_transfer()")
    op.execute(f"DROP FUNCTION {S}.note_amended_entry()")
    op.execute(f"DROP TABLE {S}.ledger_amendments")
    op.execute(f"DROP TABLE {S}.reconciled_tenant_outcomes")
    op.execute(f"DROP TABLE {S}.reconciled_account_totals")
    op.execute(f"DROP TABLE {S}.reconciliation_checkpoints")
