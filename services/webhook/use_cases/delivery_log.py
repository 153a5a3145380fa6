"""The delivery log: messages with their attempts, replay of one, recovery of failed ones."""

from __future__ import annotations

from datetime import datetime

from libs.errors import InvalidArgument
from services.webhook.domain.errors import MessageNotFound
from services.webhook.domain.records import Message
from services.webhook.use_cases.dependencies import Dependencies
from services.webhook.use_cases.ids import uuid_or_missing


async def redeliver(deps: Dependencies, tenant_id: str, message_id: str) -> Message:
    """Sends a message again, same webhook-id, fresh attempt budget."""
    log = deps.repository.delivery_log
    if not message_id.startswith("msg_") or not await log.redeliver(tenant_id, message_id, deps.clock()):
        raise MessageNotFound(f"message {message_id} not found", message_id=message_id)
    found = await log.message(tenant_id, message_id)
    if found is None:
        raise MessageNotFound(f"message {message_id} not found", message_id=message_id)
    return found


async def recover_failed(deps: Dependencies, tenant_id: str, since: datetime) -> int:
    """Makes the failed messages created since `since` due again (every tenant's when `tenant_id`
    is ""); returns how many."""
    return await deps.repository.delivery_log.recover_failed(tenant_id, since, deps.clock())


async def list_deliveries(
    deps: Dependencies, tenant_id: str, batch_id: str, cursor: str, limit: int
) -> tuple[list[Message], str]:
    """Messages newest first, of a batch or of the tenant, with their attempts."""
    if batch_id and uuid_or_missing(batch_id) != batch_id.lower():
        raise InvalidArgument("batch_id must be a UUID", batch_id=batch_id)
    return await deps.repository.delivery_log.list_messages(
        tenant_id, batch_id.lower() or None, cursor, limit
    )
