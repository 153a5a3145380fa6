"""Who is calling: customers by `X-API-Key` (resolved by billing), operators by the admin token."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated

import grpc
from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.config import Settings
from services.gateway.errors import ApiError

API_KEY_HEADER = "X-API-Key"

# A revoked key keeps working for at most this long in one gateway process.
API_KEY_CACHE_SECONDS = 2.0
API_KEY_CACHE_ENTRIES = 10_000

_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The tenant's API key (customer endpoints)."
)
_admin_scheme = HTTPBearer(auto_error=False, description="The admin token (REELBATCH_ADMIN_TOKEN).")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


class ApiKeyAuthenticator:
    """Resolves API keys to tenant ids through billing, remembering answers for a moment.

    Only successful lookups are cached (keyed by a digest, not the clear key), so a burst of
    requests costs one billing call while an unknown key is always asked again.
    """

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        deadline_seconds: float,
        *,
        ttl_seconds: float = API_KEY_CACHE_SECONDS,
        max_entries: int = API_KEY_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._billing = billing
        self._deadline_seconds = deadline_seconds
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._tenants: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    async def tenant_for(self, api_key: str) -> str:
        """The tenant owning `api_key`; raises a 401 `ApiError` when billing does not know it."""
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        cached = self._tenants.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = await self._billing.AuthenticateApiKey(
                billing_pb2.AuthenticateApiKeyRequest(api_key=api_key), timeout=self._deadline_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise _unauthorized("invalid API key") from None
            raise
        self._remember(digest, now + self._ttl_seconds, answer.tenant_id)
        return answer.tenant_id

    def _remember(self, digest: bytes, expires_at: float, tenant_id: str) -> None:
        self._tenants[digest] = (expires_at, tenant_id)
        self._tenants.move_to_end(digest)
        while len(self._tenants) > self._max_entries:
            self._tenants.popitem(last=False)


def tenant_dependency(authenticator: ApiKeyAuthenticator) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency returning the calling tenant's id (401 without a valid key)."""

    async def authenticated_tenant(api_key: Annotated[str | None, Depends(_api_key_scheme)]) -> str:
        if not api_key:
            raise _unauthorized(f"missing {API_KEY_HEADER} header")
        return await authenticator.tenant_for(api_key)

    return authenticated_tenant


def admin_dependency(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency accepting only `Authorization: Bearer <admin token>`."""
    expected = settings.admin_token.encode()

    async def authenticated_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_scheme)],
    ) -> None:
        if credentials is None:
            raise _unauthorized("missing admin bearer token")
        presented = credentials.credentials.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(presented, expected):
            raise _unauthorized("invalid admin token")

    return authenticated_admin
