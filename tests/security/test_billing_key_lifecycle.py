"""API key lifecycle, operator keys and the video access log, through billing's real gRPC server."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

if TYPE_CHECKING:
    Billing = billing_pb2_grpc.BillingServiceAsyncStub


async def _tenant_with_key(billing: Billing) -> tuple[str, billing_pb2.CreateApiKeyResponse]:
    tenant = await billing.CreateTenant(billing_pb2.CreateTenantRequest(name=f"t-{uuid.uuid4().hex[:6]}"))
    key = await billing.CreateApiKey(billing_pb2.CreateApiKeyRequest(tenant_id=tenant.tenant_id))
    return tenant.tenant_id, key


async def test_a_revoked_key_no_longer_authenticates_and_lists_as_revoked(billing: Billing) -> None:
    tenant_id, key = await _tenant_with_key(billing)
    await billing.AuthenticateApiKey(billing_pb2.AuthenticateApiKeyRequest(api_key=key.api_key))

    revoked = await billing.RevokeApiKey(
        billing_pb2.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key.key_id)
    )
    again = await billing.RevokeApiKey(
        billing_pb2.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key.key_id)
    )

    assert revoked.HasField("revoked_at")
    assert again.revoked_at == revoked.revoked_at  # idempotent: the first revocation time stays
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await billing.AuthenticateApiKey(billing_pb2.AuthenticateApiKeyRequest(api_key=key.api_key))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    [listed] = (await billing.ListApiKeys(billing_pb2.ListApiKeysRequest(tenant_id=tenant_id))).keys
    assert (listed.key_id, listed.prefix) == (key.key_id, key.api_key[:12])
    assert listed.HasField("last_used_at") and listed.HasField("revoked_at")
    assert key.api_key not in str(listed)


async def test_a_tenant_cannot_see_or_revoke_another_tenants_key(billing: Billing) -> None:
    _, key_a = await _tenant_with_key(billing)
    tenant_b, _ = await _tenant_with_key(billing)

    for call in (
        billing.RevokeApiKey(billing_pb2.RevokeApiKeyRequest(tenant_id=tenant_b, key_id=key_a.key_id)),
        billing.GetApiKey(billing_pb2.GetApiKeyRequest(tenant_id=tenant_b, key_id=key_a.key_id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    still = await billing.AuthenticateApiKey(billing_pb2.AuthenticateApiKeyRequest(api_key=key_a.api_key))
    assert still.key_id == key_a.key_id


async def test_operator_keys_carry_their_role_until_revoked(billing: Billing) -> None:
    created = await billing.CreateAdminKey(billing_pb2.CreateAdminKeyRequest(role="finance", name="auditor"))
    assert created.api_key.startswith("rb_admin_")

    found = await billing.AuthenticateAdminKey(
        billing_pb2.AuthenticateAdminKeyRequest(api_key=created.api_key)
    )
    assert (found.key_id, found.role) == (created.key_id, "finance")
    await billing.RevokeAdminKey(billing_pb2.RevokeAdminKeyRequest(key_id=created.key_id))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await billing.AuthenticateAdminKey(billing_pb2.AuthenticateAdminKeyRequest(api_key=created.api_key))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await billing.CreateAdminKey(billing_pb2.CreateAdminKeyRequest(role="root"))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_video_access_attempts_are_listed_newest_first_and_filtered(billing: Billing) -> None:
    tenant_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
    for result in ("allowed", "expired", "bad_signature"):
        await billing.RecordVideoAccess(
            billing_pb2.VideoAccess(
                tenant_id=tenant_id,
                key_id=str(uuid.uuid4()),
                client_address="127.0.0.1",
                batch_id=batch_id,
                task_id=str(uuid.uuid4()),
                mode="play",
                via="signed_url",
                result=result,
            )
        )

    first = await billing.ListVideoAccess(billing_pb2.ListVideoAccessRequest(tenant_id=tenant_id, limit=2))
    rest = await billing.ListVideoAccess(
        billing_pb2.ListVideoAccessRequest(tenant_id=tenant_id, limit=2, cursor=first.next_cursor)
    )

    assert [entry.result for entry in first.entries] == ["bad_signature", "expired"]
    assert [entry.result for entry in rest.entries] == ["allowed"]
    assert rest.next_cursor == ""
    assert all(entry.HasField("occurred_at") for entry in first.entries)
