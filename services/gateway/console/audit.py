"""The activity log entries of console actions that change another service's data (API keys,
webhook endpoints, replays, purchases, settings), relayed to billing, which keeps the tenant's log.

Written after the change succeeded: an entry never claims a change that did not happen. A log
that billing cannot take is not worth failing the customer's action for: it is logged and skipped.
"""

import logging

import grpc
from fastapi import Request
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.console.auth import ConsoleUser
from services.gateway.console.router import ConsoleDeps
from services.gateway.http.rate_limits import client_address

log = logging.getLogger(__name__)


async def record_activity(
    deps: ConsoleDeps,
    request: Request,
    user: ConsoleUser,
    action: str,
    target_kind: str = "",
    target_id: str = "",
    detail: str = "",
) -> None:
    """Appends `action` by `user` to the tenant's activity log."""
    try:
        await deps.backends.billing.RecordTenantActivity(
            billing_pb2.TenantActivity(
                tenant_id=user.tenant_id,
                actor=user.actor(),
                action=action,
                target_kind=target_kind,
                target_id=target_id,
                detail=detail,
                client_address=client_address(request.scope.get("client")),
            ),
            timeout=deps.settings.grpc_deadline_seconds,
        )
    except grpc.aio.AioRpcError as error:
        log.warning("activity %s of tenant %s not recorded: %s", action, user.tenant_id, error.code().name)
