"""The libs.rpc interceptors over a real gRPC server on localhost: the caller's trace id reaches
the handler, and every failure leaves as the one error mapping's status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from libs.errors import NotFound
from libs.rpc.client import open_channel
from libs.rpc.errors import RemoteError, remote_error
from libs.rpc.server import GrpcServer, start_grpc_server

SERVICE = "reelbatch.test.Probe"
CALLER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C

Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


async def _trace_id_seen(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return f"{trace.get_current_span().get_span_context().trace_id:032x}".encode()


async def _not_found(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise NotFound("no such batch", batch_id="b-1")


async def _crash(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise RuntimeError("a bug with a secret in its message")


HANDLERS: dict[str, Handler] = {"TraceId": _trace_id_seen, "NotFound": _not_found, "Crash": _crash}


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        name: grpc.unary_unary_rpc_method_handler(handler)
                        for name, handler in HANDLERS.items()
                    },
                ),
            )
        )

    started = await start_grpc_server("127.0.0.1:0", [register], [SERVICE])
    yield started
    await started.stop(0)


async def _call(server: GrpcServer, method: str) -> bytes:
    async with open_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None
        )
        answer: bytes = await call(b"", timeout=5)
        return answer


async def test_the_callers_trace_id_reaches_the_handler_even_when_no_span_is_recorded(
    server: GrpcServer,
) -> None:
    caller = SpanContext(CALLER_TRACE_ID, 0x00F067AA0BA902B7, is_remote=False, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(caller)):
        seen = await _call(server, "TraceId")
    assert seen == f"{CALLER_TRACE_ID:032x}".encode()
    # Twice on the same server: the wrapped handler is built once and reused.
    with trace.use_span(NonRecordingSpan(caller)):
        assert await _call(server, "TraceId") == seen


async def test_a_refusal_keeps_its_status_reason_and_details(server: GrpcServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _call(server, "NotFound")
    error: RemoteError = remote_error(raised.value)
    assert (error.code, error.reason, error.details) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
        {"batch_id": "b-1"},
    )


async def test_an_unexpected_exception_is_internal_without_its_message(server: GrpcServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _call(server, "Crash")
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in (raised.value.details() or "")
