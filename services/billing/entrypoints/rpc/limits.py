"""gRPC calls of the shared limits and of the invalidation stream (issue 27)."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from reelbatch.proto.billing.v1 import billing_pb2

from services.billing.entrypoints.rpc.base import BillingRpcs, Context


class LimitRpcs(BillingRpcs):
    """TakeRateTokens and WatchInvalidations."""

    async def TakeRateTokens(
        self, request: billing_pb2.TakeRateTokensRequest, context: Context
    ) -> billing_pb2.TakeRateTokensResponse:
        taken = await self._handlers.take_rate_tokens(
            request.bucket, request.wanted, request.rate_per_second, request.burst, request.returned
        )
        return billing_pb2.TakeRateTokensResponse(granted=taken.granted, tokens_left=taken.tokens_left)

    async def WatchInvalidations(
        self, request: billing_pb2.WatchInvalidationsRequest, context: Context
    ) -> AsyncIterator[billing_pb2.WatchInvalidationsResponse]:
        if self._invalidations is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this billing process relays no invalidations")
            return
        async for kind, subject in self._invalidations.follow():
            yield billing_pb2.WatchInvalidationsResponse(kind=kind.value, id=subject)
