"""Helpers of the batch integration tests: a fake billing server, process runners, an event tap."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message
from reelbatch.proto.batch.v1 import batch_pb2_grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from reelbatch.proto.events.v1 import events_pb2

from libs.config import Settings
from libs.errors import ErrorCategory, InvalidArgument, ServiceError
from libs.rpc.errors import remote_error, status_code_for
from libs.rpc.server import GrpcServer
from services.batch.entrypoints.main import serve
from services.batch.entrypoints.worker import run_worker

if TYPE_CHECKING:
    BatchStub = batch_pb2_grpc.BatchServiceAsyncStub

T = TypeVar("T")

PRICES = {"sora-2": 10, "veo-3": 20}


class InsufficientCreditsRefusal(ServiceError):
    category = ErrorCategory.FAILED_PRECONDITION
    reason = "insufficient_credits"


class BillingDown(ServiceError):
    category = ErrorCategory.UNAVAILABLE
    reason = "unavailable"


class StaleQuoteRefusal(ServiceError):
    category = ErrorCategory.FAILED_PRECONDITION
    reason = "stale_quote"


class FakeBilling(billing_pb2_grpc.BillingServiceServicer):
    """Quote, Reserve and ReserveMany as billing.proto describes them, with balances in memory."""

    def __init__(self) -> None:
        self.prices = dict(PRICES)
        self.stale_refusals = 0
        self.balances: dict[str, int] = {}
        self.reservations: dict[str, billing_pb2.ReserveResponse] = {}
        # The budget terms (api_key_id, project, quote_id) each batch's freeze was made under.
        self.reserved_terms: dict[str, tuple[str, str, str]] = {}
        self.reserve_down = False
        # False: ReserveMany answers UNIMPLEMENTED, as a billing of the previous release would.
        self.reserve_many_supported = True
        self.reserve_many_calls: list[int] = []
        # Set once a batch service follows the invalidation feed (its quote memo is then trusted).
        self.watched = asyncio.Event()

    def _price(self, lines: Any) -> list[billing_pb2.QuoteLine]:
        priced = []
        for line in lines:
            if line.model not in self.prices:
                # As billing's UnknownModel: INVALID_ARGUMENT naming the model.
                raise InvalidArgument(f"unknown model {line.model!r}", model=line.model)
            priced.append(
                billing_pb2.QuoteLine(model=line.model, count=line.count, unit_price=self.prices[line.model])
            )
        return priced

    async def Quote(self, request: billing_pb2.QuoteRequest, context: Any) -> billing_pb2.QuoteResponse:
        lines = self._price(request.lines)
        return billing_pb2.QuoteResponse(
            lines=lines,
            total_credits=sum(line.count * line.unit_price for line in lines),
            available_credits=self.balances.get(request.tenant_id, 0),
        )

    async def Reserve(self, request: billing_pb2.ReserveRequest, context: Any) -> billing_pb2.ReserveResponse:
        if self.reserve_down:
            raise BillingDown("billing is down")
        first = self.reservations.get(request.batch_id)
        if first is not None:
            replay = billing_pb2.ReserveResponse()
            replay.CopyFrom(first)
            replay.replayed = True
            return replay
        priced = self._price(request.lines)
        if [line.unit_price for line in priced] != [line.unit_price for line in request.lines]:
            self.stale_refusals += 1
            raise StaleQuoteRefusal("the price changed")
        required = sum(line.count * line.unit_price for line in priced)
        available = self.balances.get(request.tenant_id, 0)
        if required > available:
            raise InsufficientCreditsRefusal(
                "insufficient credits", required_credits=required, available_credits=available
            )
        self.balances[request.tenant_id] = available - required
        response = billing_pb2.ReserveResponse(
            frozen_credits=required, available_before=available, available_after=available - required
        )
        self.reservations[request.batch_id] = response
        self.reserved_terms[request.batch_id] = (request.api_key_id, request.project, request.quote_id)
        return response

    async def ReserveMany(
        self, request: billing_pb2.ReserveManyRequest, context: Any
    ) -> billing_pb2.ReserveManyResponse:
        if not self.reserve_many_supported:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        if self.reserve_down:
            raise BillingDown("billing is down")
        self.reserve_many_calls.append(len(request.reservations))
        response = billing_pb2.ReserveManyResponse()
        for item in request.reservations:
            outcome = response.outcomes.add()
            try:
                outcome.reserved.CopyFrom(await self.Reserve(item, context))
            except ServiceError as refused:
                outcome.refused.CopyFrom(
                    billing_pb2.Refusal(
                        code=status_code_for(refused).name,
                        reason=refused.reason,
                        message=refused.message,
                        details=refused.details,
                    )
                )
        return response

    async def WatchInvalidations(
        self, request: billing_pb2.WatchInvalidationsRequest, context: Any
    ) -> AsyncIterator[billing_pb2.WatchInvalidationsResponse]:
        # As billing's feed when nothing changes: subscribed, then quiet until the caller leaves,
        # so the batch service trusts its quote memo (ADR-130) and a test's price change made
        # behind its back is the race the stale-quote refusal exists for.
        yield billing_pb2.WatchInvalidationsResponse(kind="subscribed")
        self.watched.set()
        await asyncio.Event().wait()

    async def followed(self) -> None:
        """Returns once a batch service has taken the feed's `subscribed` (and had time to apply it)."""
        await asyncio.wait_for(self.watched.wait(), timeout=10)
        await asyncio.sleep(0.1)

    def reserve_effects(self, batch_id: str) -> int:
        """How many times credits were frozen for the batch (replays excluded)."""
        return int(batch_id in self.reservations)


@dataclass
class FakeBillingServer:
    servicer: FakeBilling
    server: GrpcServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


def tenant() -> str:
    return str(uuid.uuid4())


def rpc_reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    decoded = remote_error(error)
    return decoded.code, decoded.reason, decoded.details


def rpc_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The paths of the fields a refusal names (its google.rpc.BadRequest detail)."""
    return [violation.field for violation in remote_error(error).violations]


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Polls `check` until it returns something other than None, within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(
    main: Callable[[Settings, asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]], settings: Settings
) -> AsyncIterator[None]:
    """Runs a process main (serve or run_worker) in this event loop until the block ends."""
    stopping, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(main(settings, stopping, ready))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait([task, ready_wait], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready_wait.cancel()
        await task
        raise AssertionError("process returned before it was ready")
    try:
        yield
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)


@asynccontextmanager
async def batch_server(settings: Settings) -> AsyncIterator[BatchStub]:
    """A running batch server and a client stub on it."""
    async with running(serve, settings):
        # No client retries: tests see every refusal as the server sent it.
        channel = grpc.aio.insecure_channel(settings.batch_grpc_addr)
        try:
            yield batch_pb2_grpc.BatchServiceStub(channel)
        finally:
            await channel.close(grace=None)


def batch_worker(settings: Settings) -> AbstractAsyncContextManager[None]:
    """A running worker."""
    return running(run_worker, settings)


EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        events_pb2.TaskDispatch,
        events_pb2.BatchesQueued,
        events_pb2.TaskSucceeded,
        events_pb2.TaskFailed,
        events_pb2.TaskOutcomes,
        events_pb2.BatchFinished,
    )
}


@dataclass
class EventTap:
    """Every event published on the events exchange while the tap is open, decoded."""

    seen: list[tuple[str, Message]] = field(default_factory=list)

    def of(self, routing_key: str, batch_id: str) -> list[Any]:
        """The events of one batch on `routing_key` (a group's BatchesQueued unfolded)."""
        found = []
        for key, message in self.seen:
            if key != routing_key:
                continue
            parts = message.batches if isinstance(message, events_pb2.BatchesQueued) else [message]
            found += [part for part in parts if getattr(part, "batch_id", None) == batch_id]
        return found

    async def wait_for(self, routing_key: str, batch_id: str, count: int = 1) -> list[Any]:
        async def enough() -> list[Any] | None:
            found = self.of(routing_key, batch_id)
            return found if len(found) >= count else None

        return await eventually(enough)
