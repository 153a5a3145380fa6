"""What callers ask the batch service to do, as plain data (no transport types)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.batch.domain.batch import BatchItem, Metadata


@dataclass(frozen=True)
class CreateBatch:
    """Price, freeze and queue a batch; idempotent on (tenant_id, request_id) when request_id is set."""

    tenant_id: str
    request_id: str
    items: tuple[BatchItem, ...]
    webhook_url: str = ""
    # 0: no deadline; otherwise unfinished tasks are cancelled this long after creation.
    deadline_seconds: int = 0
    # The request id was generated for this request (the client sent none): nothing to replay.
    request_id_generated: bool = False
    # The client's name and labels of the batch ("" and () for none).
    name: str = ""
    metadata: Metadata = ()
    # The API key that asked (its budget applies; "" unknown) and a quote of this body ("" none).
    api_key_id: str = ""
    quote_id: str = ""
    # At most this many of the tenant's batches unfinished once this one is stored (0: no limit).
    open_batch_limit: int = 0


@dataclass(frozen=True)
class RetryFailed:
    """A new batch from the failed items of a finished batch; idempotent per source batch (one
    live retry each, ADR-048) and on (tenant_id, request_id) like CreateBatch."""

    tenant_id: str
    batch_id: str
    request_id: str
    # Failure types to retry; empty: `libs.vocabulary.DEFAULT_RETRIED_FAILURES` (never cancelled).
    failure_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListBatches:
    """A page of batches, newest first; tenant_id "" is the admin scope."""

    tenant_id: str
    status: str = ""
    cursor: str = ""
    limit: int = 0
    settlement_status: str = ""
    # created_at in [created_from, created_to) when set.
    created_from: datetime | None = None
    created_to: datetime | None = None
    # Only batches of this name, and whose metadata holds every one of these pairs.
    name: str = ""
    metadata: Metadata = ()


@dataclass(frozen=True)
class ListTasks:
    """A page of one batch's tasks in batch order; tenant_id "" is the admin scope."""

    tenant_id: str
    batch_id: str
    status: str = ""
    cursor: str = ""
    limit: int = 0
    failure_type: str = ""
    # Only tasks in one of these statuses (empty: any).
    statuses: tuple[str, ...] = ()
