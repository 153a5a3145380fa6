"""gRPC calls of tenants, API keys, operator keys and the video access log."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from reelbatch.proto.billing.v1 import billing_pb2

from libs.errors import InvalidArgument
from libs.field_mapping import from_fields, to_message
from libs.rpc.timestamps import request_instant
from services.billing.domain.api_keys import AdminKeyInfo, ApiKeyInfo, sorted_scopes
from services.billing.domain.ids import parse_tenant_id
from services.billing.domain.video_access import VideoAccess
from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class AccessRpcs(BillingRpcs):
    """CreateTenant, the key RPCs and the video access log."""

    async def CreateTenant(
        self, request: billing_pb2.CreateTenantRequest, context: Context
    ) -> billing_pb2.CreateTenantResponse:
        tenant_id = await self._handlers.create_tenant(request.name)
        return billing_pb2.CreateTenantResponse(tenant_id=str(tenant_id))

    async def CreateApiKey(
        self, request: billing_pb2.CreateApiKeyRequest, context: Context
    ) -> billing_pb2.CreateApiKeyResponse:
        issued = await self._handlers.create_api_key(
            parse_tenant_id(request.tenant_id),
            request.api_key,
            list(request.scopes),
            request_instant(request, "expires_at"),
        )
        return billing_pb2.CreateApiKeyResponse(api_key=issued.api_key, key_id=str(issued.key_id))

    async def AuthenticateApiKey(
        self, request: billing_pb2.AuthenticateApiKeyRequest, context: Context
    ) -> billing_pb2.AuthenticateApiKeyResponse:
        key = await self._handlers.authenticate_api_key(request.api_key)
        return to_message(billing_pb2.AuthenticateApiKeyResponse, key, scopes=sorted_scopes(key.scopes))

    async def ListApiKeys(
        self, request: billing_pb2.ListApiKeysRequest, context: Context
    ) -> billing_pb2.ListApiKeysResponse:
        keys = await self._handlers.list_api_keys(parse_tenant_id(request.tenant_id))
        return billing_pb2.ListApiKeysResponse(keys=[_api_key_info(key) for key in keys])

    async def GetApiKey(
        self, request: billing_pb2.GetApiKeyRequest, context: Context
    ) -> billing_pb2.ApiKeyInfo:
        key = await self._handlers.get_api_key(
            parse_tenant_id(request.tenant_id), _parse_key_id(request.key_id)
        )
        return _api_key_info(key)

    async def RevokeApiKey(
        self, request: billing_pb2.RevokeApiKeyRequest, context: Context
    ) -> billing_pb2.ApiKeyInfo:
        tenant_id = parse_tenant_id(request.tenant_id) if request.tenant_id else None
        key = await self._handlers.revoke_api_key(tenant_id, _parse_key_id(request.key_id))
        return _api_key_info(key)

    async def CreateAdminKey(
        self, request: billing_pb2.CreateAdminKeyRequest, context: Context
    ) -> billing_pb2.CreateAdminKeyResponse:
        issued, role = await self._handlers.create_admin_key(request.role, request.name)
        return billing_pb2.CreateAdminKeyResponse(
            api_key=issued.api_key, key_id=str(issued.key_id), role=role.value
        )

    async def AuthenticateAdminKey(
        self, request: billing_pb2.AuthenticateAdminKeyRequest, context: Context
    ) -> billing_pb2.AuthenticateAdminKeyResponse:
        key = await self._handlers.authenticate_admin_key(request.api_key)
        return billing_pb2.AuthenticateAdminKeyResponse(key_id=str(key.key_id), role=key.role.value)

    async def RevokeAdminKey(
        self, request: billing_pb2.RevokeAdminKeyRequest, context: Context
    ) -> billing_pb2.AdminKeyInfo:
        return _admin_key_info(await self._handlers.revoke_admin_key(_parse_key_id(request.key_id)))

    async def ListAdminKeys(
        self, request: billing_pb2.ListAdminKeysRequest, context: Context
    ) -> billing_pb2.ListAdminKeysResponse:
        keys = await self._handlers.list_admin_keys()
        return billing_pb2.ListAdminKeysResponse(keys=[_admin_key_info(key) for key in keys])

    async def RecordVideoAccess(
        self, request: billing_pb2.VideoAccess, context: Context
    ) -> billing_pb2.RecordVideoAccessResponse:
        occurred_at = request_instant(request, "occurred_at") or datetime.now(UTC)
        access_id = await self._handlers.record_video_access(
            # The message's access_id is the answer's, never the request's: a new entry has none.
            from_fields(VideoAccess, request, occurred_at=occurred_at, access_id=0)
        )
        return billing_pb2.RecordVideoAccessResponse(access_id=str(access_id))

    async def ListVideoAccess(
        self, request: billing_pb2.ListVideoAccessRequest, context: Context
    ) -> billing_pb2.ListVideoAccessResponse:
        entries, next_cursor = await self._handlers.list_video_access(
            request.tenant_id, request.batch_id, request.cursor, request.limit
        )
        return billing_pb2.ListVideoAccessResponse(
            entries=[_video_access(entry) for entry in entries], next_cursor=next_cursor
        )


def _parse_key_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument("key_id must be a UUID", field="key_id") from None


def _api_key_info(key: ApiKeyInfo) -> billing_pb2.ApiKeyInfo:
    return to_message(billing_pb2.ApiKeyInfo, key, scopes=sorted_scopes(key.scopes))


def _admin_key_info(key: AdminKeyInfo) -> billing_pb2.AdminKeyInfo:
    return to_message(billing_pb2.AdminKeyInfo, key)


def _video_access(entry: VideoAccess) -> billing_pb2.VideoAccess:
    return to_message(billing_pb2.VideoAccess, entry)
