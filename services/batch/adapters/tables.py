"""The batch schema, as SQLAlchemy Core tables (the migrations create exactly these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from libs.columns import created_at_column, credits_column, timestamp_column
from libs.messaging.outbox import outbox_table

SCHEMA = "batch"

metadata = MetaData(schema=SCHEMA)

batches = Table(
    "batches",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("request_id", Text, nullable=True),
    Column("request_fingerprint", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("total_count", Integer, nullable=False),
    credits_column("required_credits"),
    credits_column("cost_per_video", nullable=True),
    credits_column("available_snapshot", nullable=True),
    credits_column("frozen_credits", zero_default=True),
    credits_column("rejected_required", nullable=True),
    credits_column("rejected_available", nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("settlement_status", Text, nullable=False, server_default=text("'pending'")),
    Column("webhook_url", Text, nullable=True),
    created_at_column(),
    timestamp_column("queued_at", nullable=True),
    timestamp_column("finished_at", nullable=True),
    timestamp_column("settled_at", nullable=True),
    # 0002: optional deadline, why the batch was cancelled ('customer' or 'deadline'), retried batch.
    timestamp_column("deadline_at", nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("retry_of", UUID(as_uuid=True), nullable=True),
    # 0004: outcome counters, written in the transaction that finishes the tasks (ADR-031).
    Column("succeeded_count", BigInteger, nullable=False, server_default=text("0")),
    Column("failed_count", BigInteger, nullable=False, server_default=text("0")),
    Column("cancelled_count", BigInteger, nullable=False, server_default=text("0")),
    credits_column("credits_spent", zero_default=True),
    credits_column("refunded_credits", zero_default=True),
    # 0007: why a rejected batch was rejected (`RejectionReason`).
    Column("rejection_reason", Text, nullable=True),
    # 0008: tasks still queued and not yet in a dispatch message (ADR-042), less as they are
    # dispatched or cancelled, so the dispatch window is arithmetic over the batch rows.
    Column("undispatched_count", BigInteger, nullable=False, server_default=text("0")),
    # 0009: the source batch of a retry that was not rejected (ADR-048); NULL otherwise.
    Column("retry_slot", UUID(as_uuid=True), nullable=True),
    # 0010: the client's name and labels of the batch (a JSON object of strings); NULL for none.
    Column("name", Text, nullable=True),
    Column("metadata", JSONB, nullable=True),
    # 0017: the API key whose budget the create counted and the quote it cited (NULL for none),
    # so a freeze completed by recovery counts and honours the same (ADR-121).
    Column("api_key_id", Text, nullable=True),
    Column("quote_id", Text, nullable=True),
    # Idempotency of CreateBatch is this constraint, not an application check (NULL ids never clash).
    UniqueConstraint("tenant_id", "request_id", name="uq_batches_tenant_request"),
    # One live retry per source batch is this index, not an application check (ADR-048).
    Index("uq_batches_retry_slot", "retry_slot", unique=True),
    Index(
        "ix_batches_retry_of",
        "retry_of",
        "created_at",
        "id",
        postgresql_where=text("retry_of IS NOT NULL"),
    ),
    Index("ix_batches_tenant_created", "tenant_id", "created_at", "id"),
    # 0010: lists filtered by name, and by metadata containment (`@>`).
    Index(
        "ix_batches_tenant_name",
        "tenant_id",
        "name",
        "created_at",
        "id",
        postgresql_where=text("name IS NOT NULL"),
    ),
    Index(
        "ix_batches_metadata",
        "metadata",
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
        postgresql_where=text("metadata IS NOT NULL"),
    ),
    Index("ix_batches_created", "created_at", "id"),
    # 0018 (ADR-164): lists filtered by status or settlement (and a tenant's by status), each page
    # an index range in its keyset order however rare the value.
    Index("ix_batches_status_created", "status", "created_at", "id"),
    Index("ix_batches_settlement_created", "settlement_status", "created_at", "id"),
    Index("ix_batches_tenant_status_created", "tenant_id", "status", "created_at", "id"),
    Index("ix_batches_unfinished", "status", postgresql_where=text("finished_at IS NULL")),
    # 0005: the window top-up reads one tenant's open batches in creation order.
    Index(
        "ix_batches_open_by_tenant",
        "tenant_id",
        "created_at",
        "id",
        postgresql_where=text("finished_at IS NULL"),
    ),
    Index(
        "ix_batches_deadline",
        "deadline_at",
        postgresql_where=text("finished_at IS NULL AND deadline_at IS NOT NULL AND NOT cancel_requested"),
    ),
)

# 0018 (ADR-163): stored with fillfactor 90, so a batch's COPY appends rather than filling the
# small holes of old pages one row each.
tasks = Table(
    "tasks",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # Must name a batch of batches.id, checked once per statement by triggers (migration 0006,
    # ADR-037) rather than by a foreign key, whose check ran once per task row.
    Column("batch_id", UUID(as_uuid=True), nullable=False),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("batch_index", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("model", Text, nullable=False),
    credits_column("unit_price"),
    # The video length priced, for a model priced per second; 0 for a per-video model.
    Column("duration_seconds", Integer, nullable=False, server_default=text("0")),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("claims", Integer, nullable=False, server_default=text("0")),
    # 0014: claims a stopping worker handed back (not lost: the lease sweep does not count them).
    Column("handbacks", Integer, nullable=False, server_default=text("0")),
    Column("claim_token", UUID(as_uuid=True), nullable=True),
    timestamp_column("lease_expires_at", nullable=True),
    Column("failure_type", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("video_url", Text, nullable=True),
    created_at_column(),
    timestamp_column("started_at", nullable=True),
    timestamp_column("finished_at", nullable=True),
    # 0002: when the task was put in a dispatch message (NULL: waiting for the batch's window), and
    # which worker process last claimed it.
    timestamp_column("dispatched_at", nullable=True),
    Column("claimed_by", Text, nullable=True),
    # 0011 (issue 25): the item's generation settings (NULL: none), its priced options
    # ("audio=on;resolution=1080p", a quote line's key), and the live detail of a running task:
    # when its next attempt starts (while it waits to retry) and what its last attempt said.
    Column("settings", JSONB, nullable=True),
    Column("price_options", Text, nullable=False, server_default=text("''")),
    timestamp_column("next_attempt_at", nullable=True),
    Column("last_error", Text, nullable=True),
    # 0010: the client's id of the item (unique within the batch by the create rule) and its
    # labels (a JSON object of strings); NULL for none.
    Column("custom_id", Text, nullable=True),
    Column("metadata", JSONB, nullable=True),
    # 0015 (ADR-144): what the task's billed provider jobs cost us and how many there were, set
    # with its outcome (the task-outcome event carries them to billing).
    Column("provider_cost_usd_micros", BigInteger, nullable=False, server_default=text("0")),
    Column("provider_jobs", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("batch_id", "batch_index", name="uq_tasks_batch_index"),
    # Counters are derived by one GROUP BY over this index, never stored on the batch row.
    Index("ix_tasks_batch_status", "batch_id", "status"),
    Index("ix_tasks_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
    # Provider slots: running tasks per model (and tenant, for the fair share) counted at every claim.
    Index("ix_tasks_running_model", "model", "tenant_id", postgresql_where=text("status = 'running'")),
    # Dispatch windows: what is dispatched and not finished, per tenant and batch...
    Index(
        "ix_tasks_outstanding",
        "tenant_id",
        "batch_id",
        "model",
        postgresql_where=text("dispatched_at IS NOT NULL AND status IN ('queued', 'running')"),
    ),
    # ...and the next tasks to dispatch, in batch order.
    Index(
        "ix_tasks_undispatched",
        "batch_id",
        "batch_index",
        postgresql_where=text("dispatched_at IS NULL AND status = 'queued'"),
    ),
)

# 0011 (issue 25): input images uploaded with `POST /api/enterprise/files`, one row per file;
# the bytes are in the video storage under `input_key` (tenant-scoped: another tenant's id is
# unknown to intake and to the worker alike).
input_files = Table(
    "input_files",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("filename", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    created_at_column(),
    Index("ix_input_files_tenant", "tenant_id", "id"),
)

# 0012 (issue 26, ADR-110): every submission of a task's attempt to a remote provider, from the
# intent written before the create call to the job's end (`ProviderJobStatus`).
provider_jobs = Table(
    "provider_jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("task_id", UUID(as_uuid=True), nullable=False),
    Column("batch_id", UUID(as_uuid=True), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("provider", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("provider_job_id", Text, nullable=True),
    Column("handle", Text, nullable=True),
    Column("idempotency_key", Text, nullable=True),
    Column("failure_type", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("retryable", Boolean, nullable=False, server_default=text("true")),
    Column("claim_token", UUID(as_uuid=True), nullable=True),
    Column("cost_usd_micros", BigInteger, nullable=True),
    Column("submitted_at", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")),
    timestamp_column("job_recorded_at", nullable=True),
    timestamp_column("finished_at", nullable=True),
    # 0015: whether its provider bills a failed job (so its cost follows from its row, ADR-144).
    Column("failures_billed", Boolean, nullable=False, server_default=text("false")),
    Index("ix_provider_jobs_task", "task_id", "attempt"),
    Index("ix_provider_jobs_batch", "batch_id"),
    Index(
        "uq_provider_jobs_job",
        "provider",
        "provider_job_id",
        unique=True,
        postgresql_where=text("provider_job_id IS NOT NULL"),
    ),
    Index(
        "ix_provider_jobs_open",
        "status",
        postgresql_where=text("status IN ('submitting', 'running', 'in_doubt')"),
    ),
)

outbox = outbox_table(metadata, SCHEMA)
