"""Every column that references an account is indexed, so deleting an account costs index probes.

A reservation refused with 402 deletes the hold account its transaction created. PostgreSQL then
checks each foreign key that references accounts; transfers.debit_account_id and
credit_account_id and batch_holds.hold_account_id had no index, so each check scanned the whole
table: 14 ms with 40,000 transfers, growing with every transfer ever written, while the group's
wallets are locked. (ledger_entries.account_id was indexed already.)

Built CONCURRENTLY, so a live ledger keeps taking writes while the indexes are made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = "billing"
INDEXES = (
    ("ix_transfers_debit_account_id", "transfers", "debit_account_id"),
    ("ix_transfers_credit_account_id", "transfers", "credit_account_id"),
    ("ix_batch_holds_hold_account_id", "batch_holds", "hold_account_id"),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column in INDEXES:
            op.create_index(name, table, [column], schema=S, postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _ in INDEXES:
            op.drop_index(name, table_name=table, schema=S, postgresql_concurrently=True, if_exists=True)
