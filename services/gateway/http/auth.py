"""Who is calling: customers by `X-API-Key` (resolved by billing), operators by the admin token,
an operator key (`rb_admin_...`, role `admin` or `finance`) or a dashboard session.

Customer calls are rate limited per key and failed operator authentications per client address,
both in token buckets every gateway replica shares (ADR-128). Successful key lookups are cached
for `API_KEY_CACHE_SECONDS`, but only while billing's invalidation stream is followed
(`libs.invalidations`): a revoked key is forgotten by every replica as the revocation commits
(ADR-130), and while the stream is down every request asks billing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.expiring_cache import ExpiringCache
from libs.invalidations import InvalidatedCache, InvalidationFeed, InvalidationKind
from services.gateway.http.admin_sessions import AdminSessions
from services.gateway.http.errors import ApiError
from services.gateway.http.key_scopes import ALL_SCOPES, ensure_scope
from services.gateway.http.params import error_responses
from services.gateway.http.rate_limits import (
    FailedAttemptLimiter,
    SharedRateLimiter,
    client_address,
    rate_limited,
)

API_KEY_HEADER = "X-API-Key"
ADMIN_KEY_PREFIX = "rb_admin_"

# A cached lookup's lifetime; revocations reach the cache sooner through the invalidation feed.
API_KEY_CACHE_SECONDS = 2.0
API_KEY_CACHE_ENTRIES = 10_000

# Methods a read-only (`finance`) operator may use.
READ_METHODS = frozenset({"GET", "HEAD"})

_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The tenant's API key (customer endpoints)."
)
_admin_scheme = HTTPBearer(
    auto_error=False,
    description="The admin token (REELBATCH_ADMIN_TOKEN) or an operator key (`rb_admin_...`).",
)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class ApiCaller:
    """An authenticated customer call: the tenant, which of its keys was used, what the key may do
    and until when (epoch seconds; None: no expiry)."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str] = ALL_SCOPES
    expires_at: float | None = None

    def expired(self) -> bool:
        """Whether the key's expiry has passed (a cached answer must not outlive it)."""
        return self.expires_at is not None and time.time() >= self.expires_at


class ApiKeyAuthenticator:
    """Resolves API keys to callers through billing, remembering answers for a moment.

    Only successful lookups are cached, so a burst of requests costs one billing call while an
    unknown (or revoked) key is always asked again (once per burst of concurrent requests). With
    a `feed`, the cache is used only while the feed is live and forgets what it invalidates.
    """

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        deadline_seconds: float,
        *,
        rate_limiter: SharedRateLimiter | None = None,
        feed: InvalidationFeed | None = None,
        ttl_seconds: float = API_KEY_CACHE_SECONDS,
        max_entries: int = API_KEY_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._billing = billing
        self._deadline_seconds = deadline_seconds
        self._rate_limiter = rate_limiter
        self._callers = InvalidatedCache(
            ExpiringCache[bytes, ApiCaller](ttl_seconds, max_entries, clock),
            feed,
            InvalidationKind.API_KEY,
            lambda caller: caller.key_id,
        )
        self._lookups: dict[bytes, asyncio.Future[ApiCaller]] = {}

    async def caller_for(self, api_key: str) -> ApiCaller:
        """The tenant and key id of `api_key`; raises a 401 `ApiError` when billing refuses it.

        Concurrent requests with a key that is not cached share one billing call: when a cached
        answer expires under load, every request in flight would otherwise ask at once.
        """
        digest = _digest(api_key)
        cached = self._callers.get(digest)
        if cached is not None:
            return cached
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(digest, api_key))
            self._lookups[digest] = lookup
            lookup.add_done_callback(functools.partial(self._lookup_done, digest))
        # Shielded: one caller giving up does not cancel the answer the others wait for.
        return await asyncio.shield(lookup)

    def _lookup_done(self, digest: bytes, lookup: asyncio.Future[ApiCaller]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every waiter may have given up

    async def _look_up(self, digest: bytes, api_key: str) -> ApiCaller:
        ticket = self._callers.ticket()
        try:
            answer = await self._billing.AuthenticateApiKey(
                billing_pb2.AuthenticateApiKeyRequest(api_key=api_key), timeout=self._deadline_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise _unauthorized("invalid API key") from None
            raise
        caller = ApiCaller(
            tenant_id=answer.tenant_id,
            key_id=answer.key_id,
            scopes=frozenset(answer.scopes) or ALL_SCOPES,
            expires_at=answer.expires_at.ToSeconds() if answer.HasField("expires_at") else None,
        )
        self._callers.put(digest, caller, ticket)
        return caller

    async def tenant_for(self, api_key: str) -> str:
        """The tenant owning `api_key`; raises a 401 `ApiError` when billing does not know it."""
        return (await self.caller_for(api_key)).tenant_id

    def forget_key(self, key_id: str) -> None:
        """Drops a revoked key from this process's cache, so it is refused from the next request."""
        self._callers.forget(lambda caller: caller.key_id == key_id)

    async def check_rate(self, caller: ApiCaller) -> None:
        """Raises 429 `rate_limited` (with Retry-After) when the key exceeds its request rate."""
        if self._rate_limiter is None:
            return
        wait = await self._rate_limiter.acquire(caller.key_id)
        if wait > 0:
            raise rate_limited("too many requests for this API key", wait)


def caller_dependency(authenticator: ApiKeyAuthenticator) -> Callable[..., Awaitable[ApiCaller]]:
    """A FastAPI dependency returning the authenticated, rate-checked caller (401 / 429)."""

    # Annotations here are strings (postponed): FastAPI resolves them in this module's globals,
    # so dependencies refer only to module-level names.
    async def caller_of_request(
        request: Request, api_key: Annotated[str | None, Depends(_api_key_scheme)]
    ) -> ApiCaller:
        return await authenticated_caller(authenticator, api_key, request)

    return caller_of_request


def tenant_dependency(authenticator: ApiKeyAuthenticator) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency returning the calling tenant's id (401 without a valid key, 429)."""

    async def authenticated_tenant(
        request: Request, api_key: Annotated[str | None, Depends(_api_key_scheme)]
    ) -> str:
        return (await authenticated_caller(authenticator, api_key, request)).tenant_id

    return authenticated_tenant


async def authenticated_caller(
    authenticator: ApiKeyAuthenticator, api_key: str | None, request: Request | None = None
) -> ApiCaller:
    """The caller of an `X-API-Key` value, rate-checked: 401 without a valid key (or an expired
    one), 429 over its rate, 403 when the key lacks the scope of `request` (ADR-124)."""
    if not api_key:
        raise _unauthorized(f"missing {API_KEY_HEADER} header")
    caller = await authenticator.caller_for(api_key)
    if caller.expired():
        authenticator.forget_key(caller.key_id)
        raise _unauthorized("this API key has expired")
    await authenticator.check_rate(caller)
    if request is not None:
        ensure_scope(caller.scopes, request.method, request.url.path)
    return caller


class AdminRole(StrEnum):
    """`admin` may do everything; `finance` only reads (GETs and exports)."""

    ADMIN = "admin"
    FINANCE = "finance"


@dataclass(frozen=True)
class AdminPrincipal:
    """An authenticated operator: its role, and its key id ("" for the token or a session)."""

    role: AdminRole
    key_id: str = ""


class AdminAuthenticator:
    """Checks operator credentials: the admin token (constant-time), operator keys, dashboard sessions.

    Every presented-but-wrong credential counts against the client address; an address over the
    limit gets 429 with Retry-After before its credential is even looked at.
    """

    def __init__(
        self,
        sessions: AdminSessions,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        deadline_seconds: float,
        failures: FailedAttemptLimiter,
        *,
        feed: InvalidationFeed | None = None,
        ttl_seconds: float = API_KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.failures = failures
        self._billing = billing
        self._deadline_seconds = deadline_seconds
        self._keys = InvalidatedCache(
            ExpiringCache[bytes, AdminPrincipal](ttl_seconds, API_KEY_CACHE_ENTRIES, clock),
            feed,
            InvalidationKind.ADMIN_KEY,
            lambda principal: principal.key_id,
        )

    async def authenticate(self, request: Request) -> AdminPrincipal:
        """The operator behind `request`; 401 when none, 429 when its address is blocked."""
        address = client_address(request.scope.get("client"))
        await self.failures.ensure_allowed(address)
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        presented = presented.strip()
        if scheme.lower() == "bearer" and presented:
            principal = await self._principal_for(presented)
            if principal is None:
                await self.failures.record_failure(address)
                raise _unauthorized("invalid admin credentials")
            return principal
        # The dashboard's cookie is accepted on reads only: no state change on a cookie alone.
        if request.method in READ_METHODS and self.sessions.from_request(request) is not None:
            return AdminPrincipal(role=AdminRole.ADMIN)
        raise _unauthorized("missing or invalid admin bearer token")

    async def _principal_for(self, presented: str) -> AdminPrincipal | None:
        if self.sessions.is_admin_token(presented):
            return AdminPrincipal(role=AdminRole.ADMIN)
        if not presented.startswith(ADMIN_KEY_PREFIX):
            return None
        digest = _digest(presented)
        cached = self._keys.get(digest)
        if cached is not None:
            return cached
        ticket = self._keys.ticket()
        try:
            answer = await self._billing.AuthenticateAdminKey(
                billing_pb2.AuthenticateAdminKeyRequest(api_key=presented), timeout=self._deadline_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise
        principal = AdminPrincipal(role=AdminRole(answer.role), key_id=answer.key_id)
        self._keys.put(digest, principal, ticket)
        return principal

    def forget_key(self, key_id: str) -> None:
        """Drops a revoked operator key from this process's cache."""
        self._keys.forget(lambda principal: principal.key_id == key_id)


def authorize(principal: AdminPrincipal, method: str) -> None:
    """Raises 403 `forbidden` when a read-only operator tries to change something."""
    if principal.role == AdminRole.FINANCE and method not in READ_METHODS:
        raise ApiError(403, "forbidden", "the finance role is read-only")


def admin_dependency(admin_auth: AdminAuthenticator) -> Callable[..., Awaitable[AdminPrincipal]]:
    """A FastAPI dependency admitting operators (401, 429) allowed to use this method (403)."""

    async def authenticated_admin(
        request: Request, _: Annotated[object, Depends(_admin_scheme)]
    ) -> AdminPrincipal:
        principal = await admin_auth.authenticate(request)
        authorize(principal, request.method)
        return principal

    return authenticated_admin


def admin_api_router(admin_auth: AdminAuthenticator) -> APIRouter:
    """An empty /api/admin router: every route behind operator authentication, with its errors."""
    return APIRouter(
        prefix="/api/admin",
        tags=["admin"],
        dependencies=[Depends(admin_dependency(admin_auth))],
        responses=error_responses(401, 403, 429, 500, 503),
    )
