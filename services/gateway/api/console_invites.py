"""The operator's endpoint that invites a tenant's first console user (or any other)."""

from fastapi import APIRouter

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import AdminAuthenticator, admin_api_router
from services.gateway.http.params import TenantIdPath, error_responses
from services.gateway.schemas.console_invites import ConsoleInviteCreated, CreateConsoleInviteRequest
from services.gateway.use_cases.console_invites import OPERATOR, create_console_invite


def console_invites_router(
    settings: Settings, backends: Backends, admin_auth: AdminAuthenticator
) -> APIRouter:
    """POST /api/admin/tenants/{tenant_id}/console-invites (operators; `finance` keys may not)."""
    router = admin_api_router(admin_auth)

    @router.post(
        "/tenants/{tenant_id}/console-invites",
        status_code=201,
        response_model=ConsoleInviteCreated,
        summary="Invite someone to a tenant's console (a single-use, expiring link)",
        responses=error_responses(404, 409, 413, 422),
    )
    async def create_invite(
        tenant_id: TenantIdPath, body: CreateConsoleInviteRequest
    ) -> ConsoleInviteCreated:
        created = await create_console_invite(
            backends.billing,
            settings.grpc_deadline_seconds,
            settings.public_base_url,
            tenant_id=tenant_id,
            email=body.email,
            role=body.role,
            actor=OPERATOR,
        )
        return ConsoleInviteCreated(invite_id=created.invite_id, invite_url=created.invite_url)

    return router
