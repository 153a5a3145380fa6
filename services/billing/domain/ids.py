"""Typed identifiers, and parsing them from the strings that travel on the wire."""

from __future__ import annotations

import uuid
from typing import NewType

from libs.errors import InvalidArgument

TenantId = NewType("TenantId", uuid.UUID)
BatchId = NewType("BatchId", uuid.UUID)
# Task ids are opaque to billing: they only serve as business keys and ledger references.
TaskId = NewType("TaskId", str)


def _parse_uuid(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None


def parse_tenant_id(value: str) -> TenantId:
    """A tenant id from its string form; InvalidArgument when malformed."""
    return TenantId(_parse_uuid("tenant_id", value))


def parse_batch_id(value: str) -> BatchId:
    """A batch id from its string form; InvalidArgument when malformed."""
    return BatchId(_parse_uuid("batch_id", value))


def parse_task_id(value: str) -> TaskId:
    """A task id; InvalidArgument when empty."""
    if not value:
        raise InvalidArgument("task_id is required", field="task_id")
    return TaskId(value)
