"""Caches that billing's invalidation stream keeps honest (ADR-130): the gateway's key cache and
the batch service's quote memo, each fed by a real `InvalidationFeed` over a fake stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.invalidations import InvalidationFeed
from services.batch.adapters.billing_client import GrpcBilling, MemoizedQuotes
from services.batch.domain.batch import QuoteLine, RequestedLine, TenantId
from services.gateway.http.auth import ApiKeyAuthenticator
from services.gateway.http.errors import ApiError
from tests.unit.gateway.gateway_fakes import API_KEY, KEY_ID, TENANT_ID, FakeBilling


class StreamingBilling(FakeBilling):
    """Fake billing whose WatchInvalidations streams what the test sends (None ends the stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.stream: asyncio.Queue[billing_pb2.WatchInvalidationsResponse | None] = asyncio.Queue()

    def send(self, kind: str, subject: str = "") -> None:
        self.stream.put_nowait(billing_pb2.WatchInvalidationsResponse(kind=kind, id=subject))

    def WatchInvalidations(self, request: billing_pb2.WatchInvalidationsRequest) -> Stream:
        return Stream(self.stream)


class Stream:
    """A server stream as grpc.aio hands it out: async iterable, cancellable."""

    def __init__(self, queue: asyncio.Queue[billing_pb2.WatchInvalidationsResponse | None]) -> None:
        self._queue = queue

    def __aiter__(self) -> AsyncIterator[billing_pb2.WatchInvalidationsResponse]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[billing_pb2.WatchInvalidationsResponse]:
        while (message := await self._queue.get()) is not None:
            yield message

    def cancel(self) -> bool:
        return True


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def billing() -> StreamingBilling:
    return StreamingBilling()


@pytest.fixture
async def feed(billing: StreamingBilling) -> AsyncIterator[InvalidationFeed]:
    following = InvalidationFeed(
        cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), resubscribe_seconds=0
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(following.run(stopping))
    yield following
    stopping.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def authenticator(billing: StreamingBilling, feed: InvalidationFeed) -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator(cast("billing_pb2_grpc.BillingServiceAsyncStub", billing), 1.0, feed=feed)


async def subscribed(billing: StreamingBilling) -> None:
    """Billing says the feed's stream is subscribed, and the feed has heard it."""
    billing.send("subscribed")
    await settled()


def lookups(billing: FakeBilling) -> Callable[[], int]:
    return lambda: len(billing.requests("AuthenticateApiKey"))


async def test_the_key_cache_is_used_only_while_the_feed_is_live(
    billing: StreamingBilling, authenticator: ApiKeyAuthenticator
) -> None:
    asked = lookups(billing)
    await authenticator.caller_for(API_KEY)
    await authenticator.caller_for(API_KEY)
    assert asked() == 2  # not subscribed yet: every request asks billing

    await subscribed(billing)
    await authenticator.caller_for(API_KEY)
    await authenticator.caller_for(API_KEY)
    assert asked() == 3  # live: the second answer came from memory

    billing.stream.put_nowait(None)  # the stream breaks
    await settled()
    await authenticator.caller_for(API_KEY)
    assert asked() == 4


async def test_a_revocation_on_the_feed_empties_the_key_cache_at_once(
    billing: StreamingBilling, authenticator: ApiKeyAuthenticator
) -> None:
    await subscribed(billing)
    await authenticator.caller_for(API_KEY)
    del billing.api_keys[API_KEY]  # revoked in billing

    billing.send("api_key", KEY_ID)
    await settled()

    with pytest.raises(ApiError) as refused:
        await authenticator.caller_for(API_KEY)
    assert refused.value.status == 401


async def test_an_answer_older_than_an_invalidation_is_not_remembered(
    billing: StreamingBilling, authenticator: ApiKeyAuthenticator
) -> None:
    await subscribed(billing)
    original = billing.AuthenticateApiKey

    async def revoked_while_answering(
        request: billing_pb2.AuthenticateApiKeyRequest, timeout: float | None = None
    ) -> billing_pb2.AuthenticateApiKeyResponse:
        answer = await original(request, timeout)
        billing.send("api_key", KEY_ID)  # the revocation commits before the answer arrives
        await settled()
        return answer

    billing.AuthenticateApiKey = revoked_while_answering  # type: ignore[method-assign]
    await authenticator.caller_for(API_KEY)
    billing.AuthenticateApiKey = original  # type: ignore[method-assign]
    del billing.api_keys[API_KEY]

    with pytest.raises(ApiError):
        await authenticator.caller_for(API_KEY)


class CountingQuotes:
    """The batch service's billing port, counting quotes."""

    def __init__(self) -> None:
        self.quotes = 0
        self.price = 10

    async def quote(self, tenant_id: TenantId, lines: list[RequestedLine]) -> list[QuoteLine]:
        self.quotes += 1
        return [
            QuoteLine(model=line.model, count=line.count, unit_price=self.price, duration_seconds=4)
            for line in lines
        ]


@pytest.fixture
def quotes() -> CountingQuotes:
    return CountingQuotes()


async def test_a_new_price_list_empties_the_quote_memo(
    billing: StreamingBilling, feed: InvalidationFeed, quotes: CountingQuotes
) -> None:
    memo = MemoizedQuotes(cast(GrpcBilling, quotes), feed=feed, ttl_seconds=3600)
    await subscribed(billing)
    tenant = TenantId(uuid.UUID(TENANT_ID))
    line = RequestedLine(model="sora-2", count=1, duration_seconds=4)
    assert (await memo.quote(tenant, [line]))[0].unit_price == 10
    quotes.price = 12
    assert (await memo.quote(tenant, [line]))[0].unit_price == 10  # remembered

    billing.send("prices")
    await settled()

    assert (await memo.quote(tenant, [line]))[0].unit_price == 12
