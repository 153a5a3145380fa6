"""Payments that go back (issue 29 item 4, ADR-134): a tenant `debt` account, the ledger's reversal
reasons, what each payment had taken back, and every reversal (refund level or dispute) with its
split between the available credits and the debt.

The `debt` account is debit-normal: its balance is minus the credits the tenant owes (a refund or a
dispute of credits already spent), so every tenant balance still equals the sum of its entries and
the available balance never goes below zero.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

S = "billing"
SYSTEM_KINDS = "('revenue', 'grants', 'payments')"
ACCOUNT_KINDS = "('available', 'hold', 'debt', 'revenue', 'grants', 'payments')"
OLD_ACCOUNT_KINDS = "('available', 'hold', 'revenue', 'grants', 'payments')"
REF_TYPES = (
    "('topup', 'purchase', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle',"
    " 'payment_reversal', 'debt_payment', 'payment_reinstated')"
)
OLD_REF_TYPES = "('topup', 'purchase', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle')"


def _account_constraints(kinds: str, owner_kinds: str, not_negative: str) -> None:
    op.create_check_constraint("ck_accounts_kind", "accounts", f"kind IN {kinds}", schema=S)
    op.create_check_constraint("ck_accounts_not_negative", "accounts", not_negative, schema=S)
    op.create_check_constraint(
        "ck_accounts_owner",
        "accounts",
        f"(kind IN {owner_kinds} AND tenant_id IS NOT NULL AND batch_id IS NULL)"
        " OR (kind = 'hold' AND tenant_id IS NOT NULL AND batch_id IS NOT NULL)"
        f" OR (kind IN {SYSTEM_KINDS} AND tenant_id IS NULL AND batch_id IS NULL AND balance = 0)",
        schema=S,
    )


def _drop_account_constraints() -> None:
    for name in ("ck_accounts_kind", "ck_accounts_not_negative", "ck_accounts_owner"):
        op.drop_constraint(name, "accounts", schema=S)


def upgrade() -> None:
    _drop_account_constraints()
    _account_constraints(
        ACCOUNT_KINDS, "('available', 'debt')", f"kind IN {SYSTEM_KINDS} OR kind = 'debt' OR balance >= 0"
    )
    op.create_check_constraint(
        "ck_accounts_debt_not_positive", "accounts", "kind <> 'debt' OR balance <= 0", schema=S
    )
    op.create_index(
        "uq_accounts_debt_per_tenant",
        "accounts",
        ["tenant_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("kind = 'debt'"),
    )
    op.drop_constraint("ck_transfers_ref_type", "transfers", schema=S)
    op.create_check_constraint("ck_transfers_ref_type", "transfers", f"ref_type IN {REF_TYPES}", schema=S)
    op.add_column(
        "payments",
        sa.Column("refunded_usd_cents", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        schema=S,
    )
    op.add_column(
        "payments",
        sa.Column("reversed_credits", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        schema=S,
    )
    op.create_check_constraint(
        "ck_payments_reversed_within_credits", "payments", "reversed_credits BETWEEN 0 AND credits", schema=S
    )
    op.create_table(
        "payment_reversals",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("payment_id", sa.BigInteger, sa.ForeignKey(f"{S}.payments.id"), nullable=False),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey(f"{S}.tenants.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("from_available", sa.BigInteger, nullable=False),
        sa.Column("to_debt", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'reversed'")),
        sa.Column("reinstated_to_debt", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("reinstated_to_available", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("reinstated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('refund', 'dispute')", name="ck_payment_reversals_kind"),
        sa.CheckConstraint("status IN ('reversed', 'reinstated')", name="ck_payment_reversals_status"),
        sa.CheckConstraint(
            "credits >= 0 AND from_available >= 0 AND to_debt >= 0 AND from_available + to_debt = credits",
            name="ck_payment_reversals_split",
        ),
        sa.UniqueConstraint("payment_id", "kind", "source_id", name="uq_payment_reversals_source"),
        schema=S,
    )
    op.create_index("ix_payment_reversals_tenant_id", "payment_reversals", ["tenant_id", "id"], schema=S)


def downgrade() -> None:
    op.drop_table("payment_reversals", schema=S)
    op.drop_constraint("ck_payments_reversed_within_credits", "payments", schema=S)
    op.drop_column("payments", "reversed_credits", schema=S)
    op.drop_column("payments", "refunded_usd_cents", schema=S)
    op.drop_constraint("ck_transfers_ref_type", "transfers", schema=S)
    op.create_check_constraint("ck_transfers_ref_type", "transfers", f"ref_type IN {OLD_REF_TYPES}", schema=S)
    op.drop_index("uq_accounts_debt_per_tenant", "accounts", schema=S)
    op.drop_constraint("ck_accounts_debt_not_positive", "accounts", schema=S)
    _drop_account_constraints()
    _account_constraints(OLD_ACCOUNT_KINDS, "('available')", f"kind IN {SYSTEM_KINDS} OR balance >= 0")
