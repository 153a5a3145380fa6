"""Builds gRPC servers the same way in every service: error translation, health, reflection.

`DependencyMonitor` keeps the health status honest: it probes the process's dependencies
(database, broker) every few seconds and reports NOT_SERVING while any of them is unreachable,
so the gateway's `/readyz` and any load balancer stop sending work to a process that cannot do it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from libs.lifecycle import wait_at_most
from libs.rpc.errors import failure_status
from libs.rpc.tls import TlsFiles

log = logging.getLogger(__name__)

_rpc_duration = metrics.get_meter("reelbatch.rpc").create_histogram(
    "rpc_server_duration",
    unit="s",
    description="Latency of unary gRPC calls served, by service, method and status",
    explicit_bucket_boundaries_advisory=[
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
    ],
)


class ServedHandlers:
    """The server as each servicer's generated `add_*_to_server` sees it: every unary method
    handler is wrapped once, at registration, with what OpenTelemetry's server interceptor (the
    caller's trace context, the SERVER span) does not do: the `rpc_server_duration_seconds` metric
    and the one error mapping, `failure_status`.

    The generated code registers its handlers twice (looked up by name, and looked up through a
    generic handler); both get the same wrapped handlers.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self._wrapped: dict[str, Any] = {}

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        """Registers `handlers` (by method name) wrapped."""
        wrapped = {name: self._wrap(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[Any]) -> None:
        """Registers `generic_handlers`, whose handlers are wrapped when first looked up."""
        self._server.add_generic_rpc_handlers(tuple(_WrappedLookup(self, h) for h in generic_handlers))

    def _wrap(self, method: str, handler: Any) -> Any:
        # Unary and client-streaming handlers answer once: both get the metric and error mapping.
        if handler is None or (handler.unary_unary is None and handler.stream_unary is None):
            return handler
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, _served(handler, method))
            self._wrapped[method] = cached
        return cached[1]


class _WrappedLookup(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, handlers: ServedHandlers, inner: Any) -> None:
        self._handlers = handlers
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._inner.service(handler_call_details)
        return self._handlers._wrap(handler_call_details.method, handler)


def _served(handler: Any, method: str) -> Any:
    """`handler` (unary, or client-streaming) wrapped with latency and error translation (inside
    the interceptor's span)."""
    inner = handler.unary_unary or handler.stream_unary
    service, _, name = method.lstrip("/").rpartition("/")

    async def served(request: Any, context: Any) -> Any:
        # grpc-stubs lacks `abort_with_status` on the aio context, hence `Any`.
        started = time.perf_counter()
        status = "OK"
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            status = _code_name(context.code())
            raise
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception as error:
            failure = failure_status(error, method)
            status = failure.code.name
            await context.abort_with_status(failure)
        finally:
            _rpc_duration.record(
                time.perf_counter() - started,
                {"rpc_service": service, "rpc_method": name, "rpc_grpc_status_code": status},
            )
            if status != "OK":
                # The interceptor sees `abort_with_status` as a bare exception: the status is ours to set.
                span = trace.get_current_span()
                if span.is_recording():
                    span.set_attribute("rpc.grpc.status_code", status)
                    span.set_status(trace.StatusCode.ERROR, status)

    build = (
        grpc.unary_unary_rpc_method_handler
        if handler.unary_unary is not None
        else grpc.stream_unary_rpc_method_handler
    )
    return build(
        served,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _code_name(code: object) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


# A probe returns normally when its dependency answers and raises (or times out) when it does not.
DependencyProbe = Callable[[], Awaitable[None]]


class StreamedHealth(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
    """The reference health servicer with `Watch` written as an async generator.

    Clients' health checking (libs/rpc/client.py) watches every replica; the reference `Watch`
    writes with `context.write`, which OpenTelemetry's server interceptor cannot wrap (it iterates
    the handler's answers), so every watch failed and no replica counted as healthy.
    """

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> AsyncIterator[Any]:  # noqa: N802 - gRPC's name
        """Answers the current status, then every change, until the caller goes away."""
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last_status = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last_status:
                        yield health_pb2.HealthCheckResponse(status=status)
                    last_status = status
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]


class AddressUnavailable(RuntimeError):
    """A gRPC server could not bind its listen address: the port is taken (by another process or
    replica) or the address is not one of this host's."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot listen for gRPC on {address}: the port is already in use or the address is not "
            "this host's (give each replica its own *_GRPC_LISTEN address)"
        )
        self.address = address


# Every connection a server accepts is closed gracefully (GOAWAY) after about this long (gRPC adds
# +-10% jitter): the client then reconnects and re-resolves its `dns:///` target, so replicas
# added since (a scaled-up Deployment behind a headless Service) join its round robin pool within
# this time. Calls in flight get the grace period to finish; a call racing the GOAWAY is retried
# by the channels' retry policy (UNAVAILABLE). ADR-132.
MAX_CONNECTION_AGE_SECONDS = 120.0
MAX_CONNECTION_AGE_GRACE_SECONDS = 600.0


# How long a stopping server keeps serving after turning NOT_SERVING when clients watch its health
# (they balance over replicas): their watch hears it at once; this covers calls already sent.
DRAIN_NOTICE_SECONDS = 0.5


class GrpcServer:
    """A started `grpc.aio` server plus the health servicer that reports its status."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: Any,  # grpc_health ships no type stubs
        service_names: Sequence[str],
        port: int,
    ) -> None:
        self.server = server
        self.health = health_servicer
        self.service_names = tuple(service_names)
        self.port = port
        self._stopped = False

    async def set_serving(self, serving: bool) -> None:
        """Reports SERVING or NOT_SERVING for every service of this server (and the server itself)."""
        # A stopping server stays NOT_SERVING whatever a late dependency check finds.
        serving = serving and not self._stopped
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*self.service_names, ""):
            await self.health.set(name, status)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Turns NOT_SERVING, gives watching clients a moment to move their calls to other
        replicas, stops accepting calls and lets in-flight ones finish within the grace period."""
        await self.set_serving(False)
        self._stopped = True
        if self._watched():
            # A call a client picked this replica for just before it heard NOT_SERVING is still on
            # its way: stopping at once would cancel it (gRPC cancels calls not yet handled).
            await asyncio.sleep(min(DRAIN_NOTICE_SECONDS, grace_seconds))
        await self.server.stop(grace_seconds)

    def _watched(self) -> bool:
        # The reference servicer counts open Watch streams by service; no public accessor exists.
        return any(self.health._watcher_count_by_service.values())


async def start_grpc_server(
    address: str,
    register: Sequence[Callable[[grpc.aio.Server], None]],
    service_names: Sequence[str],
    *,
    tls: TlsFiles | None = None,
) -> GrpcServer:
    """Binds `address` (port 0 picks a free port), registers servicers, and starts serving.

    With `tls`, the port speaks mutual TLS only: clients without a certificate from the CA are refused.
    """
    server = grpc.aio.server(
        interceptors=[aio_server_interceptor()],  # type: ignore[no-untyped-call]
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # gRPC sets SO_REUSEPORT by default: a second replica configured with a taken port would
            # silently share it (and half the connections). Off, a taken port fails the start.
            ("grpc.so_reuseport", 0),
            ("grpc.max_connection_age_ms", int(MAX_CONNECTION_AGE_SECONDS * 1000)),
            ("grpc.max_connection_age_grace_ms", int(MAX_CONNECTION_AGE_GRACE_SECONDS * 1000)),
        ],
    )
    # The generated add_*_to_server functions only register handlers: ServedHandlers is all of a
    # server they use.
    served = cast(grpc.aio.Server, ServedHandlers(server))
    for add in register:
        add(served)
    health_servicer = StreamedHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, served)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError as error:  # grpcio's only signal that the bind failed
        port = 0
        log.debug("gRPC bind of %s failed: %s", address, error)
    if port == 0:
        raise AddressUnavailable(address)
    await server.start()
    started = GrpcServer(server, health_servicer, service_names, port)
    await started.set_serving(True)
    return started


class DependencyMonitor:
    """Probes dependencies every `interval_seconds` and flips the server's health accordingly.

    A probe that raises or takes longer than `timeout_seconds` counts as down. Health is
    NOT_SERVING while a dependency of `required` (default: every probed one) is down; the others
    are only reported. Only changes are logged (one line when the set of dependencies down
    changes, one when every dependency is back).
    """

    def __init__(
        self,
        server: GrpcServer,
        probes: Mapping[str, DependencyProbe],
        *,
        interval_seconds: float = 2.0,
        timeout_seconds: float = 1.5,
        required: Collection[str] | None = None,
    ) -> None:
        self._server = server
        self._probes = dict(probes)
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self._required = frozenset(self._probes if required is None else required)
        self.down: frozenset[str] = frozenset()

    async def _is_up(self, name: str, probe: DependencyProbe) -> bool:
        try:
            await asyncio.wait_for(probe(), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure of a probe means "unreachable", whatever its type
            log.debug("dependency %s probe failed: %r", name, error)
            return False
        return True

    async def check_once(self) -> frozenset[str]:
        """Probes every dependency once, updates the health status, returns the ones down."""
        names = list(self._probes)
        results = await asyncio.gather(*(self._is_up(name, self._probes[name]) for name in names))
        down = frozenset(name for name, up in zip(names, results, strict=True) if not up)
        if down != self.down:
            serving = not down & self._required
            if down:
                log.warning(
                    "dependencies unreachable: %s; health %s",
                    ", ".join(sorted(down)),
                    "stays SERVING" if serving else "NOT_SERVING",
                )
            else:
                log.info("dependencies reachable again; health SERVING")
            await self._server.set_serving(serving)
        self.down = down
        return down

    async def run(self, stopping: asyncio.Event) -> None:
        """Checks until `stopping` is set."""
        while not stopping.is_set():
            await self.check_once()
            try:
                await wait_at_most(stopping.wait(), self._interval)
            except TimeoutError:
                pass
