"""Rows of the webhook schema as domain records (no SQL here)."""

from __future__ import annotations

from typing import Any

from services.webhook.domain.records import Endpoint, TenantSecret


def endpoint_of(row: Any) -> Endpoint:
    """An `endpoints` row (every column but the secrets) as an Endpoint."""
    return Endpoint(
        endpoint_id=str(row.id),
        tenant_id=str(row.tenant_id),
        url=row.url,
        event_types=tuple(row.event_types),
        status=row.status,
        created_at=row.created_at,
        description=row.description,
    )


def tenant_secret_of(row: Any) -> TenantSecret:
    """A `signing_secrets` row as the tenant's TenantSecret."""
    return TenantSecret(
        secret=row.secret,
        created_at=row.created_at,
        previous_secret=row.previous_secret,
        previous_expires_at=row.previous_expires_at,
    )
