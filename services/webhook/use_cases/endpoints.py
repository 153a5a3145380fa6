"""The tenant's endpoints: register one (after the SSRF check), page through them, delete one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.webhook.domain.errors import EndpointNotFound
from services.webhook.domain.events import normalize_event_types
from services.webhook.domain.records import Endpoint
from services.webhook.use_cases.dependencies import Dependencies
from services.webhook.use_cases.destinations import validate_url
from services.webhook.use_cases.ids import uuid_or_missing
from services.webhook.use_cases.signing_secrets import new_secret


async def create_endpoint(
    deps: Dependencies, tenant_id: str, url: str, event_types: Sequence[str], description: str
) -> tuple[Endpoint, str]:
    """Registers an endpoint after the SSRF check; returns it with its secret (shown once)."""
    chosen = normalize_event_types(event_types)
    await validate_url(deps, url)
    endpoint = Endpoint(
        endpoint_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        url=url,
        event_types=chosen,
        status="enabled",
        created_at=deps.clock(),
        description=description,
    )
    secret = new_secret()
    await deps.repository.endpoints.create_endpoint(endpoint, secret)
    return endpoint, secret


async def list_endpoints(
    deps: Dependencies, tenant_id: str, cursor: str, limit: int
) -> tuple[list[Endpoint], str]:
    """The tenant's live endpoints, newest first, and the cursor of the next page ("" at the end)."""
    return await deps.repository.endpoints.list_endpoints(tenant_id, cursor, limit)


async def delete_endpoint(deps: Dependencies, tenant_id: str, endpoint_id: str) -> Endpoint:
    """Deletes the tenant's endpoint; its pending messages fail (EndpointNotFound if not its)."""
    endpoint = await deps.repository.endpoints.delete_endpoint(tenant_id, uuid_or_missing(endpoint_id))
    if endpoint is None:
        raise EndpointNotFound(f"endpoint {endpoint_id} not found", endpoint_id=endpoint_id)
    return endpoint
