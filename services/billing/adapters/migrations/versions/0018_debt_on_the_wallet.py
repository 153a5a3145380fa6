"""What a tenant owes, kept on its available account row (ADR-165).

`accounts.owed` is minus the balance of the tenant's `debt` account (ADR-134), stored on its
`available` account, the row every freeze already locks: a freeze reads its balance and debt in the
one locking read (under `FOR NO KEY UPDATE`, a row that changed while the read waited is read again
at its latest version, so the debt read is final) instead of a second read of the debt account.

A row trigger keeps it: every change of a debt account's balance (a payment reversal, a debt
payment, a dispute won, or a manual fix) writes the new figure to the tenant's available row in the
same transaction. The code paths that change a debt already lock both rows first (`lock_wallet`);
the trigger's `WHEN` queues nothing for the updates of other accounts (freezes, captures, refunds).
Zero on every other account (a check). Existing debts are copied here once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

S = "billing"


def upgrade() -> None:
    op.add_column(
        "accounts", sa.Column("owed", sa.BigInteger, nullable=False, server_default=sa.text("0")), schema=S
    )
    op.execute(
        f"""
        UPDATE {S}.accounts a SET owed = -d.balance
        FROM {S}.accounts d
        WHERE d.kind = 'debt' AND d.balance <> 0 AND a.kind = 'available' AND a.tenant_id = d.tenant_id"""
    )
    op.create_check_constraint(
        "ck_accounts_owed", "accounts", "owed >= 0 AND (owed = 0 OR kind = 'available')", schema=S
    )
    op.execute(
        f"""
        CREATE FUNCTION {S}.keep_owed_on_wallet() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {S}.accounts SET owed = -NEW.balance
            WHERE tenant_id = NEW.tenant_id AND kind = 'available';
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER debt_kept_on_wallet AFTER UPDATE OF balance ON {S}.accounts
        FOR EACH ROW WHEN (NEW.kind = 'debt' AND NEW.balance IS DISTINCT FROM OLD.balance)
        EXECUTE FUNCTION {S}.keep_owed_on_wallet()"""
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER debt_kept_on_wallet ON {S}.accounts")
    op.execute(f"DROP FUNCTION {S}.keep_owed_on_wallet()")
    op.drop_constraint("ck_accounts_owed", "accounts", schema=S)
    op.drop_column("accounts", "owed", schema=S)
