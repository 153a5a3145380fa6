"""The billing schema as SQLAlchemy Core tables (the migrations create exactly these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
    text,
)

from libs.outbox import outbox_table

SCHEMA = "billing"

metadata = MetaData(schema=SCHEMA)

tenants = Table(
    "tenants",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("billing.tenants.id"), nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Index("ix_billing_api_keys_tenant_id", "tenant_id"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("tenant_id", Uuid, ForeignKey("billing.tenants.id"), nullable=True),
    Column("batch_id", Uuid, nullable=True),
    Column("balance", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('available', 'hold', 'revenue', 'grants')", name="ck_accounts_kind"),
    # Tenant accounts can never go negative, whatever the code does.
    CheckConstraint("kind IN ('revenue', 'grants') OR balance >= 0", name="ck_accounts_not_negative"),
    CheckConstraint(
        "(kind = 'available' AND tenant_id IS NOT NULL AND batch_id IS NULL)"
        " OR (kind = 'hold' AND tenant_id IS NOT NULL AND batch_id IS NOT NULL)"
        " OR (kind IN ('revenue', 'grants') AND tenant_id IS NULL AND batch_id IS NULL AND balance = 0)",
        name="ck_accounts_owner",
    ),
    Index(
        "uq_accounts_available_per_tenant",
        "tenant_id",
        unique=True,
        postgresql_where=text("kind = 'available'"),
    ),
    Index("uq_accounts_hold_per_batch", "batch_id", unique=True, postgresql_where=text("kind = 'hold'")),
    Index(
        "uq_accounts_system_kind",
        "kind",
        unique=True,
        postgresql_where=text("kind IN ('revenue', 'grants')"),
    ),
    Index("ix_accounts_hold_by_tenant", "tenant_id", postgresql_where=text("kind = 'hold'")),
)

REF_TYPES_SQL = "('topup', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle')"

transfers = Table(
    "transfers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # The business key: the database, not the code, guarantees each effect happens once (I3).
    Column("key", Text, nullable=False, unique=True),
    Column("ref_type", Text, nullable=False),
    Column("ref_id", Text, nullable=False),
    Column("tenant_id", Uuid, nullable=False),
    Column("batch_id", Uuid, nullable=True),
    Column("debit_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("credit_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"ref_type IN {REF_TYPES_SQL}", name="ck_transfers_ref_type"),
    CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_distinct_accounts"),
    Index("ix_transfers_batch_id", "batch_id"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("transfer_id", BigInteger, ForeignKey("billing.transfers.id"), nullable=False),
    Column("account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("tenant_id", Uuid, nullable=True),
    Column("batch_id", Uuid, nullable=True),
    Column("ref_type", Text, nullable=False),
    Column("ref_id", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount <> 0", name="ck_ledger_entries_amount_nonzero"),
    Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    Index("ix_ledger_entries_transfer_id", "transfer_id"),
)

batch_holds = Table(
    "batch_holds",
    metadata,
    Column("batch_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, ForeignKey("billing.tenants.id"), nullable=False),
    Column("hold_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("item_count", BigInteger, nullable=False),
    Column("frozen", BigInteger, nullable=False),
    Column("available_before", BigInteger, nullable=False),
    Column("available_after", BigInteger, nullable=False),
    Column("captured", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded", BigInteger, nullable=False, server_default=text("0")),
    Column("outcomes_applied", BigInteger, nullable=False, server_default=text("0")),
    Column("released", BigInteger, nullable=False, server_default=text("0")),
    Column("settlement_status", Text, nullable=False, server_default=text("'pending'")),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "settlement_status IN ('pending', 'settled', 'refunded')", name="ck_batch_holds_settlement_status"
    ),
    CheckConstraint("captured + refunded + released <= frozen", name="ck_batch_holds_within_frozen"),
    CheckConstraint("outcomes_applied <= item_count", name="ck_batch_holds_outcomes_within_items"),
    Index("ix_billing_batch_holds_tenant_id", "tenant_id"),
)

batch_hold_lines = Table(
    "batch_hold_lines",
    metadata,
    Column("batch_id", Uuid, ForeignKey("billing.batch_holds.batch_id"), nullable=False),
    Column("model", Text, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("batch_id", "model", name="pk_batch_hold_lines"),
    CheckConstraint("unit_price > 0", name="ck_batch_hold_lines_price_positive"),
    CheckConstraint("count > 0", name="ck_batch_hold_lines_count_positive"),
)

outbox = outbox_table(metadata, SCHEMA)
