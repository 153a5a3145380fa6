"""API key lifecycle: customers list and revoke their own keys; operators manage every key.

A revoked key is dropped from this gateway's cache at once; every other gateway replica drops it
when billing's invalidation stream announces the revocation (milliseconds, ADR-130).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import (
    AdminAuthenticator,
    ApiCaller,
    ApiKeyAuthenticator,
    admin_dependency,
    caller_dependency,
)
from services.gateway.http.errors import ApiError
from services.gateway.http.params import TenantIdPath, documented, error_responses, is_uuid
from services.gateway.schemas.access import (
    AdminKeyCreated,
    AdminKeyList,
    AdminKeyView,
    ApiKeyList,
    ApiKeyView,
    CreateAdminKeyRequest,
)


def key_id_path(key_id: Annotated[str, Path(description="Identifier of the key (a UUID).")]) -> str:
    """The key id of the path, lower-cased; a malformed one is simply not found."""
    if not is_uuid(key_id):
        raise ApiError(404, "not_found", "API key not found")
    return key_id.lower()


KeyIdPath = Annotated[str, Depends(key_id_path)]

# An operator's revocation names the key alone: billing finds it in whichever tenant holds it.
ANY_TENANT = ""


def api_keys_router(
    settings: Settings,
    backends: Backends,
    authenticator: ApiKeyAuthenticator,
    admin_auth: AdminAuthenticator,
) -> APIRouter:
    """Customer routes under /api/enterprise/api-keys and operator routes under /api/admin."""
    router = APIRouter(responses=error_responses(401, 429, 500, 503))
    customer = Depends(caller_dependency(authenticator))
    admin = Depends(admin_dependency(admin_auth))
    deadline = settings.grpc_deadline_seconds
    billing = backends.billing

    # One call per rule, whoever asks: a customer for its own tenant, an operator for any.
    async def tenant_keys(tenant_id: str) -> ApiKeyList:
        keys = await billing.ListApiKeys(
            billing_pb2.ListApiKeysRequest(tenant_id=tenant_id), timeout=deadline
        )
        return ApiKeyList(items=[ApiKeyView.from_proto(key) for key in keys.keys])

    async def revoke_api_key(tenant_id: str, key_id: str) -> ApiKeyView:
        revoked = await billing.RevokeApiKey(
            billing_pb2.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key_id), timeout=deadline
        )
        # Refused by this process at once, not when its cache entry expires.
        authenticator.forget_key(revoked.key_id)
        return ApiKeyView.from_proto(revoked)

    @router.get(
        "/api/enterprise/api-keys",
        **documented(
            ApiKeyList,
            "List the tenant's API keys (prefix, created, last used, revoked; never the secret)",
            tags=["customer"],
        ),
    )
    async def list_own_keys(caller: Annotated[ApiCaller, customer]) -> ApiKeyList:
        return await tenant_keys(caller.tenant_id)

    @router.delete(
        "/api/enterprise/api-keys/{key_id}",
        **documented(
            ApiKeyView,
            "Revoke one of the tenant's keys (the one in use included); idempotent",
            404,
            tags=["customer"],
        ),
    )
    async def revoke_own_key(caller: Annotated[ApiCaller, customer], key_id: KeyIdPath) -> ApiKeyView:
        return await revoke_api_key(caller.tenant_id, key_id)

    @router.get(
        "/api/admin/tenants/{tenant_id}/api-keys",
        **documented(
            ApiKeyList, "List a tenant's API keys (never the secrets)", 403, 404, 422, tags=["admin"]
        ),
    )
    async def list_tenant_keys(_: Annotated[object, admin], tenant_id: TenantIdPath) -> ApiKeyList:
        return await tenant_keys(tenant_id)

    @router.delete(
        "/api/admin/api-keys/{key_id}",
        **documented(ApiKeyView, "Revoke any tenant's API key; idempotent", 403, 404, tags=["admin"]),
    )
    async def revoke_any_key(_: Annotated[object, admin], key_id: KeyIdPath) -> ApiKeyView:
        return await revoke_api_key(ANY_TENANT, key_id)

    @router.post(
        "/api/admin/admin-keys",
        **documented(
            AdminKeyCreated,
            "Issue an operator key with role admin or finance (shown once)",
            403,
            413,
            422,
            status_code=201,
            tags=["admin"],
        ),
    )
    async def create_admin_key(_: Annotated[object, admin], body: CreateAdminKeyRequest) -> AdminKeyCreated:
        created = await billing.CreateAdminKey(
            billing_pb2.CreateAdminKeyRequest(role=body.role, name=body.name), timeout=deadline
        )
        return AdminKeyCreated(api_key=created.api_key, key_id=created.key_id, role=created.role)

    @router.get(
        "/api/admin/admin-keys",
        **documented(AdminKeyList, "List operator keys (never the secrets)", 403, tags=["admin"]),
    )
    async def list_admin_keys(_: Annotated[object, admin]) -> AdminKeyList:
        keys = await billing.ListAdminKeys(billing_pb2.ListAdminKeysRequest(), timeout=deadline)
        return AdminKeyList(items=[AdminKeyView.from_proto(key) for key in keys.keys])

    @router.delete(
        "/api/admin/admin-keys/{key_id}",
        **documented(AdminKeyView, "Revoke an operator key; idempotent", 403, 404, tags=["admin"]),
    )
    async def revoke_admin_key(_: Annotated[object, admin], key_id: KeyIdPath) -> AdminKeyView:
        revoked = await billing.RevokeAdminKey(
            billing_pb2.RevokeAdminKeyRequest(key_id=key_id), timeout=deadline
        )
        admin_auth.forget_key(revoked.key_id)
        return AdminKeyView.from_proto(revoked)

    return router
