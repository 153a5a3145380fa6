"""Rows of the webhook schema as domain records (no SQL here)."""

from __future__ import annotations

from typing import Any

from libs.field_mapping import from_fields
from services.webhook.domain.records import Endpoint, TenantSecret


def endpoint_of(row: Any) -> Endpoint:
    """An `endpoints` row (every column but the secrets) as an Endpoint."""
    return from_fields(
        Endpoint,
        row,
        endpoint_id=str(row.id),
        tenant_id=str(row.tenant_id),
        event_types=tuple(row.event_types),
    )


def tenant_secret_of(row: Any) -> TenantSecret:
    """A `signing_secrets` row as the tenant's TenantSecret."""
    return from_fields(TenantSecret, row)
