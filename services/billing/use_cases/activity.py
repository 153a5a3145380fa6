"""Activity log use cases: entries recorded for changes made outside billing, and the log's pages.

Billing's own audited changes (members, sign-ins, keys) write their entry inside their own
transaction (`console_access`); this is for the other services' changes, relayed by the gateway.
"""

from __future__ import annotations

from datetime import datetime

from libs.errors import InvalidArgument
from services.billing.domain.console_access import ActivityEntry
from services.billing.domain.ids import TenantId
from services.billing.domain.ledger import page_size, parse_cursor
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant

MAX_ACTION_CHARS = 64
MAX_DETAIL_CHARS = 500


async def record_activity(deps: Dependencies, entry: ActivityEntry) -> int:
    """Appends one entry to its tenant's log; returns its id."""
    if not entry.action or len(entry.action) > MAX_ACTION_CHARS:
        raise InvalidArgument(f"action must be 1..{MAX_ACTION_CHARS} characters", field="action")
    if len(entry.detail) > MAX_DETAIL_CHARS:
        raise InvalidArgument(f"detail must be at most {MAX_DETAIL_CHARS} characters", field="detail")
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, entry.tenant_id)
        return await tx.activity.record(entry, deps.clock())


async def list_activity(
    deps: Dependencies,
    tenant_id: TenantId,
    *,
    action: str = "",
    actor_id: str = "",
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    cursor: str = "",
    limit: int = 0,
) -> tuple[list[ActivityEntry], str]:
    """A page of the tenant's log newest first, with the next page's cursor ("" on the last)."""
    size = page_size(limit)
    before = parse_cursor(cursor)
    async with deps.repository.transaction() as tx:
        entries = await tx.activity.list(
            tenant_id,
            action=action,
            actor_id=actor_id,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
            before_id=before,
            limit=size + 1,
        )
    page = entries[:size]
    return page, str(page[-1].activity_id) if len(entries) > size else ""
