"""The billing schema as SQLAlchemy Core tables (the migrations create exactly these).

Over 500 lines on purpose: one declaration per table of the schema (~30) and nothing else, in one
file so a reader sees every table, key and constraint together (conventions from `libs.columns`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from libs.columns import (
    created_at_column,
    credits_column,
    database_clock_column,
    serial_id_column,
    tenant_id_column,
    timestamp_column,
    updated_at_column,
    uuid_id_column,
)
from libs.messaging.outbox import outbox_table

SCHEMA = "billing"

metadata = MetaData(schema=SCHEMA)

tenants = Table(
    "tenants",
    metadata,
    uuid_id_column(),
    Column("name", Text, nullable=False),
    created_at_column(),
)

api_keys = Table(
    "api_keys",
    metadata,
    uuid_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    created_at_column(),
    timestamp_column("revoked_at", nullable=True),
    timestamp_column("last_used_at", nullable=True),
    # 0009: what the key may do (`batches`, `read`, `billing`), and when it stops working.
    Column("scopes", ARRAY(Text), nullable=False, server_default=text("'{batches,read,billing}'::text[]")),
    timestamp_column("expires_at", nullable=True),
    CheckConstraint(
        "scopes <@ '{batches,read,billing}'::text[] AND cardinality(scopes) > 0", name="ck_api_keys_scopes"
    ),
    Index("ix_billing_api_keys_tenant_id", "tenant_id"),
)

# Operator keys (issue 8): no tenant, a role instead.
admin_keys = Table(
    "admin_keys",
    metadata,
    uuid_id_column(),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=text("''")),
    created_at_column(),
    timestamp_column("revoked_at", nullable=True),
    timestamp_column("last_used_at", nullable=True),
    CheckConstraint("role IN ('admin', 'finance')", name="ck_admin_keys_role"),
)

# Every attempt to play, download or embed a video. Ids are text: a forged link's are kept as presented.
video_access_log = Table(
    "video_access_log",
    metadata,
    serial_id_column(),
    timestamp_column("occurred_at", nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("client_address", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("via", Text, nullable=False),
    Column("result", Text, nullable=False),
    Index("ix_billing_video_access_log_tenant_id", "tenant_id", "id"),
    Index("ix_billing_video_access_log_batch_id", "batch_id", "id"),
)

# System accounts keep no balance; `grants` and `payments` are the two sources of credits.
SYSTEM_KINDS_SQL = "('revenue', 'grants', 'payments')"
ACCOUNT_KINDS_SQL = "('available', 'hold', 'debt', 'revenue', 'grants', 'payments')"

accounts = Table(
    "accounts",
    metadata,
    serial_id_column(),
    Column("kind", Text, nullable=False),
    Column("tenant_id", Uuid, ForeignKey("billing.tenants.id"), nullable=True),
    Column("batch_id", Uuid, nullable=True),
    credits_column("balance", zero_default=True),
    created_at_column(),
    # What the tenant owes (minus its debt account's balance), on its available row: a freeze reads
    # it with the wallet it locks. Kept by the `debt_kept_on_wallet` trigger (0018, ADR-165).
    credits_column("owed", zero_default=True),
    CheckConstraint(f"kind IN {ACCOUNT_KINDS_SQL}", name="ck_accounts_kind"),
    # Tenant accounts can never go negative, whatever the code does; a tenant's `debt` (0013,
    # ADR-134) is the one debit-normal account: its balance is minus what the tenant owes.
    CheckConstraint(
        f"kind IN {SYSTEM_KINDS_SQL} OR kind = 'debt' OR balance >= 0", name="ck_accounts_not_negative"
    ),
    CheckConstraint("kind <> 'debt' OR balance <= 0", name="ck_accounts_debt_not_positive"),
    CheckConstraint("owed >= 0 AND (owed = 0 OR kind = 'available')", name="ck_accounts_owed"),
    CheckConstraint(
        "(kind IN ('available', 'debt') AND tenant_id IS NOT NULL AND batch_id IS NULL)"
        " OR (kind = 'hold' AND tenant_id IS NOT NULL AND batch_id IS NOT NULL)"
        f" OR (kind IN {SYSTEM_KINDS_SQL} AND tenant_id IS NULL AND batch_id IS NULL AND balance = 0)",
        name="ck_accounts_owner",
    ),
    Index(
        "uq_accounts_available_per_tenant",
        "tenant_id",
        unique=True,
        postgresql_where=text("kind = 'available'"),
    ),
    Index("uq_accounts_debt_per_tenant", "tenant_id", unique=True, postgresql_where=text("kind = 'debt'")),
    Index("uq_accounts_hold_per_batch", "batch_id", unique=True, postgresql_where=text("kind = 'hold'")),
    Index(
        "uq_accounts_system_kind",
        "kind",
        unique=True,
        postgresql_where=text(f"kind IN {SYSTEM_KINDS_SQL}"),
    ),
    Index("ix_accounts_hold_by_tenant", "tenant_id", postgresql_where=text("kind = 'hold'")),
)

REF_TYPES_SQL = (
    "('topup', 'purchase', 'batch_upfront', 'batch_capture', 'batch_refund', 'batch_settle',"
    " 'payment_reversal', 'debt_payment', 'payment_reinstated')"
)

transfers = Table(
    "transfers",
    metadata,
    serial_id_column(),
    # The business key: the database, not the code, guarantees each effect happens once (I3).
    Column("key", Text, nullable=False, unique=True),
    Column("ref_type", Text, nullable=False),
    Column("ref_id", Text, nullable=False),
    tenant_id_column(),
    Column("batch_id", Uuid, nullable=True),
    Column("debit_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("credit_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    credits_column("amount"),
    created_at_column(),
    # The model of a task outcome (per-model statements and margins); NULL on other transfers.
    Column("model", Text, nullable=True),
    CheckConstraint(f"ref_type IN {REF_TYPES_SQL}", name="ck_transfers_ref_type"),
    CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_distinct_accounts"),
    # 0017: a batch's transfers in id order (its billing tab's pages), ADR-153.
    Index("ix_transfers_batch_id_id", "batch_id", "id"),
    # Deleting a hold account (a refused reservation) checks both references by these (0005).
    Index("ix_transfers_debit_account_id", "debit_account_id"),
    Index("ix_transfers_credit_account_id", "credit_account_id"),
    Index(
        "ix_transfers_capture_created_at", "created_at", postgresql_where=text("ref_type = 'batch_capture'")
    ),
    # A tenant's transfers of one kind over a period (console usage, granted totals) (0007).
    Index("ix_transfers_tenant_ref_type_created_at", "tenant_id", "ref_type", "created_at"),
    # 0017: the transfers of the months reconciliation has not sealed yet (ADR-154).
    Index("ix_transfers_created_at_brin", "created_at", postgresql_using="brin"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    serial_id_column(),
    Column("transfer_id", BigInteger, ForeignKey("billing.transfers.id"), nullable=False),
    Column("account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("tenant_id", Uuid, nullable=True),
    Column("batch_id", Uuid, nullable=True),
    Column("ref_type", Text, nullable=False),
    Column("ref_id", Text, nullable=False),
    credits_column("amount"),
    credits_column("balance_after", nullable=True),
    created_at_column(),
    CheckConstraint("amount <> 0", name="ck_ledger_entries_amount_nonzero"),
    Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    Index("ix_ledger_entries_transfer_id", "transfer_id"),
    Index("ix_ledger_entries_account_id_created_at", "account_id", "created_at"),
    # 0017: the entries of the months reconciliation has not sealed yet (ADR-154).
    Index("ix_ledger_entries_created_at_brin", "created_at", postgresql_using="brin"),
)

batch_holds = Table(
    "batch_holds",
    metadata,
    Column("batch_id", Uuid, primary_key=True),
    tenant_id_column(references="billing.tenants.id"),
    Column("hold_account_id", BigInteger, ForeignKey("billing.accounts.id"), nullable=False),
    Column("item_count", BigInteger, nullable=False),
    credits_column("frozen"),
    credits_column("available_before"),
    credits_column("available_after"),
    credits_column("captured", zero_default=True),
    credits_column("refunded", zero_default=True),
    Column("outcomes_applied", BigInteger, nullable=False, server_default=text("0")),
    credits_column("released", zero_default=True),
    Column("settlement_status", Text, nullable=False, server_default=text("'pending'")),
    timestamp_column("settled_at", nullable=True),
    created_at_column(),
    # 0009: whose budgets the hold counts against, in which month (its first day, UTC).
    Column("api_key_id", Uuid, nullable=True),
    Column("project", Text, nullable=True),
    Column("budget_period", Date, nullable=True),
    CheckConstraint(
        "settlement_status IN ('pending', 'settled', 'refunded')", name="ck_batch_holds_settlement_status"
    ),
    CheckConstraint("captured + refunded + released <= frozen", name="ck_batch_holds_within_frozen"),
    CheckConstraint("outcomes_applied <= item_count", name="ck_batch_holds_outcomes_within_items"),
    Index("ix_billing_batch_holds_tenant_id", "tenant_id"),
    Index("ix_batch_holds_hold_account_id", "hold_account_id"),
    Index("ix_batch_holds_tenant_budget_period", "tenant_id", "budget_period"),
    # 0017: what a tenant holds is in its pending holds (a settled one holds nothing, I1).
    Index(
        "ix_batch_holds_pending_by_tenant",
        "tenant_id",
        postgresql_where=text("settlement_status = 'pending'"),
    ),
)

# 0017 (ADR-152): monthly summaries written by triggers on the inserts of entries and transfers, in
# the transaction of the movement. Per tenant account (available, hold), UTC month and ref type:
account_month_totals = Table(
    "account_month_totals",
    metadata,
    Column("account_id", BigInteger, nullable=False),
    Column("month", Date, nullable=False),
    Column("ref_type", Text, nullable=False),
    Column("entries", BigInteger, nullable=False),
    credits_column("amount"),
    PrimaryKeyConstraint("account_id", "month", "ref_type", name="pk_account_month_totals"),
)

# ...and per month, tenant, model ('' when unrecorded) and outcome kind (capture, refund), with the
# provider cost of captures as frozen with their batch.
tenant_month_outcomes = Table(
    "tenant_month_outcomes",
    metadata,
    Column("month", Date, nullable=False),
    tenant_id_column(),
    Column("model", Text, nullable=False),
    Column("ref_type", Text, nullable=False),
    Column("transfers", BigInteger, nullable=False),
    credits_column("amount"),
    Column("provider_cost_usd_micros", BigInteger, nullable=False),
    # 0019 (ADR-170): the part of it frozen for captures whose task reported a provider spend.
    Column("reported_frozen_cost_usd_micros", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("month", "tenant_id", "model", "ref_type", name="pk_tenant_month_outcomes"),
)

# 0010: stored quotes (ADR-123): priced lines honoured once, by the batch recorded here.
quotes = Table(
    "quotes",
    metadata,
    uuid_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("api_key_id", Uuid, nullable=True),
    Column("fingerprint", Text, nullable=False),
    Column("lines", JSONB, nullable=False),
    credits_column("total"),
    timestamp_column("created_at", nullable=False),
    timestamp_column("expires_at", nullable=False),
    Column("batch_id", Uuid, nullable=True, unique=True),
    timestamp_column("used_at", nullable=True),
    CheckConstraint("total >= 0", name="ck_quotes_total"),
    CheckConstraint("(batch_id IS NULL) = (used_at IS NULL)", name="ck_quotes_used"),
    Index("ix_quotes_tenant_id", "tenant_id"),
)

# 0009: monthly spend caps (ADR-121): the tenant's (scope_id ''), one of its keys', a project's.
budgets = Table(
    "budgets",
    metadata,
    tenant_id_column(references="billing.tenants.id"),
    Column("scope", Text, nullable=False),
    Column("scope_id", Text, nullable=False),
    credits_column("monthly_credits"),
    updated_at_column(),
    PrimaryKeyConstraint("tenant_id", "scope", "scope_id", name="pk_budgets"),
    CheckConstraint("scope IN ('tenant', 'api_key', 'project')", name="ck_budgets_scope"),
    CheckConstraint("monthly_credits >= 0", name="ck_budgets_monthly_credits"),
)

# A tenant's spend alert thresholds (ADR-125); no row: no alerts.
alert_thresholds = Table(
    "alert_thresholds",
    metadata,
    tenant_id_column(references="billing.tenants.id", primary_key=True),
    credits_column("low_balance_credits", nullable=True),
    Column("budget_percent", Integer, nullable=True),
    updated_at_column(),
    CheckConstraint("low_balance_credits >= 1", name="ck_alert_thresholds_low_balance"),
    CheckConstraint("budget_percent BETWEEN 1 AND 100", name="ck_alert_thresholds_percent"),
)

batch_hold_lines = Table(
    "batch_hold_lines",
    metadata,
    Column("batch_id", Uuid, ForeignKey("billing.batch_holds.batch_id"), nullable=False),
    Column("model", Text, nullable=False),
    credits_column("unit_price"),
    Column("count", BigInteger, nullable=False),
    # Our provider cost per video when the batch was accepted (margins use the frozen cost).
    Column("provider_cost_usd_micros", BigInteger, nullable=False, server_default=text("0")),
    # Video length of the line's items for a model priced per second; 0 for per-video models.
    Column("duration_seconds", Integer, nullable=False, server_default=text("0")),
    # 0008: one line per price (priced generation settings, ADR-090).
    PrimaryKeyConstraint("batch_id", "model", "duration_seconds", "unit_price", name="pk_batch_hold_lines"),
    CheckConstraint("unit_price > 0", name="ck_batch_hold_lines_price_positive"),
    CheckConstraint("count > 0", name="ck_batch_hold_lines_count_positive"),
)

# 0016 (ADR-144): what the providers bill us for each task, as its outcome event reported it.
task_provider_costs = Table(
    "task_provider_costs",
    metadata,
    # As the outcome's transfer names it (its ref_id).
    Column("task_id", Text, primary_key=True),
    Column("batch_id", Uuid, nullable=False),
    Column("model", Text, nullable=False),
    Column("captured", Boolean, nullable=False),
    Column("provider_cost_usd_micros", BigInteger, nullable=False),
    Column("provider_jobs", Integer, nullable=False),
    database_clock_column("recorded_at"),
    CheckConstraint("provider_cost_usd_micros >= 0", name="ck_task_provider_costs_cost"),
    Index("ix_task_provider_costs_batch", "batch_id"),
    Index("ix_task_provider_costs_recorded_at", "recorded_at"),
)

# One row per payment received; (provider, reference) and a Stripe payment intent credit once.
payments = Table(
    "payments",
    metadata,
    serial_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("provider", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("payment_intent", Text, nullable=True),
    Column("pack_id", Text, nullable=True),
    credits_column("credits"),
    Column("amount_usd_cents", BigInteger, nullable=False),
    Column("transfer_id", BigInteger, ForeignKey("billing.transfers.id"), nullable=True),
    created_at_column(),
    # 0013 (ADR-134): Stripe's cumulative `amount_refunded` seen so far, and the credits taken back
    # net of reinstatements (refunds and disputes), never more than `credits`.
    Column("refunded_usd_cents", BigInteger, nullable=False, server_default=text("0")),
    credits_column("reversed_credits", zero_default=True),
    CheckConstraint("reversed_credits BETWEEN 0 AND credits", name="ck_payments_reversed_within_credits"),
    CheckConstraint("provider IN ('stripe', 'invoice')", name="ck_payments_provider"),
    CheckConstraint("credits > 0", name="ck_payments_credits_positive"),
    CheckConstraint("amount_usd_cents >= 0", name="ck_payments_amount_not_negative"),
    UniqueConstraint("provider", "reference", name="uq_payments_provider_reference"),
    Index(
        "uq_payments_payment_intent",
        "provider",
        "payment_intent",
        unique=True,
        postgresql_where=text("payment_intent IS NOT NULL"),
    ),
    Index("ix_payments_tenant_id", "tenant_id"),
)

# Every payment-provider delivery, verified or not. A verified event id is handled once.
payment_events = Table(
    "payment_events",
    metadata,
    serial_id_column(),
    Column("provider", Text, nullable=False),
    # NULL when the delivery did not verify: an unverified id is not trusted as a key.
    Column("event_id", Text, nullable=True),
    Column("event_type", Text, nullable=False, server_default=text("''")),
    Column("outcome", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("tenant_id", Uuid, nullable=True),
    Column("payment_reference", Text, nullable=True),
    database_clock_column("received_at"),
    Index(
        "uq_payment_events_provider_event_id",
        "provider",
        "event_id",
        unique=True,
        postgresql_where=text("event_id IS NOT NULL"),
    ),
)

# 0013 (ADR-134): every reversal of a payment (a refund level, a dispute) and how it was split
# between the available credits and the debt; a dispute won records what came back.
payment_reversals = Table(
    "payment_reversals",
    metadata,
    serial_id_column(),
    Column("payment_id", BigInteger, ForeignKey("billing.payments.id"), nullable=False),
    tenant_id_column(references="billing.tenants.id"),
    Column("kind", Text, nullable=False),
    # The dispute id, or `refunded:<cumulative cents>` for a refund.
    Column("source_id", Text, nullable=False),
    credits_column("credits"),
    credits_column("from_available"),
    credits_column("to_debt"),
    Column("status", Text, nullable=False, server_default=text("'reversed'")),
    credits_column("reinstated_to_debt", zero_default=True),
    credits_column("reinstated_to_available", zero_default=True),
    created_at_column(),
    timestamp_column("reinstated_at", nullable=True),
    CheckConstraint("kind IN ('refund', 'dispute')", name="ck_payment_reversals_kind"),
    CheckConstraint("status IN ('reversed', 'reinstated')", name="ck_payment_reversals_status"),
    CheckConstraint(
        "credits >= 0 AND from_available >= 0 AND to_debt >= 0 AND from_available + to_debt = credits",
        name="ck_payment_reversals_split",
    ),
    UniqueConstraint("payment_id", "kind", "source_id", name="uq_payment_reversals_source"),
    Index("ix_payment_reversals_tenant_id", "tenant_id", "id"),
)

# 0014 (ADR-135): a tenant's automatic top-up settings and its Stripe customer; no row: off.
auto_top_up_settings = Table(
    "auto_top_up_settings",
    metadata,
    tenant_id_column(references="billing.tenants.id", primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=text("false")),
    credits_column("threshold_credits", zero_default=True),
    Column("pack_id", Text, nullable=False, server_default=text("''")),
    Column("max_per_month", Integer, nullable=False, server_default=text("1")),
    Column("stripe_customer_id", Text, nullable=True),
    Column("payment_method_id", Text, nullable=True),
    Column("payment_method_label", Text, nullable=False, server_default=text("''")),
    # Why it turned itself off (a declined payment), shown until the owner turns it on again.
    Column("disabled_reason", Text, nullable=False, server_default=text("''")),
    timestamp_column("disabled_at", nullable=True),
    updated_at_column(),
    CheckConstraint("threshold_credits >= 0", name="ck_auto_top_up_threshold"),
    CheckConstraint("max_per_month BETWEEN 1 AND 100", name="ck_auto_top_up_max_per_month"),
)

# 0014: one row per threshold crossing that buys a pack: the outbox of the top-up loop. Its key is
# the crossing's (the Stripe Idempotency-Key); one open purchase per tenant at a time.
auto_top_ups = Table(
    "auto_top_ups",
    metadata,
    uuid_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("crossing_key", Text, nullable=False, unique=True),
    Column("pack_id", Text, nullable=False),
    credits_column("credits"),
    Column("amount_usd_cents", BigInteger, nullable=False),
    Column("period", Date, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("payment_intent", Text, nullable=True),
    Column("failure_code", Text, nullable=False, server_default=text("''")),
    Column("failure_message", Text, nullable=False, server_default=text("''")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    timestamp_column("lease_until", nullable=True),
    created_at_column(),
    updated_at_column(),
    CheckConstraint(
        "status IN ('pending', 'submitted', 'succeeded', 'failed')", name="ck_auto_top_ups_status"
    ),
    Index(
        "uq_auto_top_ups_open_per_tenant",
        "tenant_id",
        unique=True,
        postgresql_where=text("status IN ('pending', 'submitted')"),
    ),
    Index("ix_auto_top_ups_tenant_period", "tenant_id", "period"),
    Index("ix_auto_top_ups_pending", "created_at", postgresql_where=text("status = 'pending'")),
)

# What a tenant's console owner decides for its members (issue 24); no row: the defaults.
tenant_console_settings = Table(
    "tenant_console_settings",
    metadata,
    tenant_id_column(references="billing.tenants.id", primary_key=True),
    Column("finance_may_buy_credits", Boolean, nullable=False, server_default=text("false")),
    updated_at_column(),
)

# Customer console access (issue 24, migration 0006): people of a tenant, their invites and
# sessions, failed sign-ins per email, and the tenant's activity log.
CONSOLE_ROLES_SQL = "('owner', 'developer', 'finance')"

console_users = Table(
    "console_users",
    metadata,
    uuid_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("email", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("invite_id", Uuid, nullable=True),
    created_at_column(),
    timestamp_column("removed_at", nullable=True),
    CheckConstraint(f"role IN {CONSOLE_ROLES_SQL}", name="ck_console_users_role"),
    # One active user per email across tenants: the sign-in form asks for no tenant (ADR-075).
    Index("uq_console_users_active_email", "email", unique=True, postgresql_where=text("removed_at IS NULL")),
    Index("ix_console_users_tenant_id", "tenant_id"),
)

console_invites = Table(
    "console_invites",
    metadata,
    uuid_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    Column("email", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("invited_by_kind", Text, nullable=False),
    Column("invited_by_id", Text, nullable=False, server_default=text("''")),
    Column("invited_by_label", Text, nullable=False, server_default=text("''")),
    created_at_column(),
    timestamp_column("expires_at", nullable=False),
    timestamp_column("accepted_at", nullable=True),
    timestamp_column("revoked_at", nullable=True),
    Column("user_id", Uuid, nullable=True),
    CheckConstraint(f"role IN {CONSOLE_ROLES_SQL}", name="ck_console_invites_role"),
    Index("ix_console_invites_tenant_id", "tenant_id"),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    uuid_id_column(),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("user_id", Uuid, ForeignKey("billing.console_users.id"), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("client_address", Text, nullable=False, server_default=text("''")),
    timestamp_column("created_at", nullable=False),
    timestamp_column("last_seen_at", nullable=False),
    timestamp_column("expires_at", nullable=False),
    timestamp_column("revoked_at", nullable=True),
    Index("ix_console_sessions_user_id", "user_id"),
)

# Failed sign-ins per (normalized) email, in the database so every replica counts the same ones.
console_sign_in_failures = Table(
    "console_sign_in_failures",
    metadata,
    Column("email", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    timestamp_column("window_started_at", nullable=False),
    timestamp_column("locked_until", nullable=True),
)

# Shared token buckets (an API key's request rate, an address's failed sign-ins), ADR-128. Times
# are seconds since the epoch on PostgreSQL's clock; a missing bucket is a full one.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("bucket", Text, primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("rate", Double, nullable=False),
    Column("burst", Integer, nullable=False),
    Column("granted", Integer, nullable=False),
)

tenant_activity = Table(
    "tenant_activity",
    metadata,
    serial_id_column(),
    tenant_id_column(references="billing.tenants.id"),
    timestamp_column("occurred_at", nullable=False),
    Column("actor_kind", Text, nullable=False),
    Column("actor_id", Text, nullable=False),
    Column("actor_label", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target_kind", Text, nullable=False),
    Column("target_id", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("client_address", Text, nullable=False),
    Index("ix_tenant_activity_tenant_id", "tenant_id", "id"),
)

outbox = outbox_table(metadata, SCHEMA)
