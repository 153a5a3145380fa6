"""Signing secrets: the tenant's default secret (batch URLs) and each endpoint's own, and their
rotation with an overlap during which old and new both sign."""

from __future__ import annotations

import secrets as random_source
from datetime import timedelta

from services.webhook.domain.errors import EndpointNotFound
from services.webhook.domain.records import RotatedEndpointSecret, TenantSecret
from services.webhook.domain.signing import SECRET_BYTES, secret_from_bytes
from services.webhook.use_cases.dependencies import Dependencies
from services.webhook.use_cases.ids import uuid_or_missing


def new_secret() -> str:
    """A fresh signing secret (`whsec_` + base64 of random bytes)."""
    return secret_from_bytes(random_source.token_bytes(SECRET_BYTES))


async def signing_secret(deps: Dependencies, tenant_id: str) -> TenantSecret:
    """The tenant's default secret, created on first ask."""
    return await deps.repository.signing_secrets.ensure_tenant_secret(tenant_id, new_secret())


async def rotate_signing_secret(deps: Dependencies, tenant_id: str) -> TenantSecret:
    """A new default secret for the tenant; the old one signs alongside it during the overlap."""
    now = deps.clock()
    overlap_until = now + timedelta(seconds=deps.delivery.secret_overlap_seconds)
    return await deps.repository.signing_secrets.rotate_tenant_secret(
        tenant_id, new_secret(), now, overlap_until
    )


async def rotate_endpoint_secret(
    deps: Dependencies, tenant_id: str, endpoint_id: str
) -> RotatedEndpointSecret:
    """A new secret for the endpoint; the old one signs alongside it during the overlap."""
    overlap_until = deps.clock() + timedelta(seconds=deps.delivery.secret_overlap_seconds)
    rotated = await deps.repository.endpoints.rotate_endpoint_secret(
        tenant_id, uuid_or_missing(endpoint_id), new_secret(), overlap_until
    )
    if rotated is None:
        raise EndpointNotFound(f"endpoint {endpoint_id} not found", endpoint_id=endpoint_id)
    return rotated
