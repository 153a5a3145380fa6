"""One life for every service process: start, serve until told to stop, then drain and close.

A `ServiceProcess` is described first (its gRPC API, HTTP listeners, bus consumers, background
loops and the resources it holds) and then `run()`; each service's `entrypoints/main.py` is only a
builder of one; `backend_process()` describes what the gRPC services (batch, billing, webhook)
share. The shutdown order is written once, here (`close()`), after Temporal's worker:

1. stop taking work: watchers (health monitor, gauges) are cancelled, health turns NOT_SERVING and
   the servers stop accepting calls; the calls in flight finish within the grace period;
2. drain: loops watch the stopping event (set before step 1), finish what they hold and return;
   they share the same grace period, which starts when stopping begins;
3. cancel what is still running after the grace period (logged);
4. close the resources: the bus first (closing it cancels consumer handlers still running, and
   their unacked messages go back to the queue), then outbound clients (HTTP pools, then gRPC
   channels), then the database, which everything before it may still use.

`close()` is idempotent: a second call (or one racing the first) waits for the first to finish.
A loop or listener that fails stops the whole process, and `run()` then raises
`ProcessComponentFailed` after closing, so a supervisor sees an error instead of a process that
limps on or hangs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc

from libs.config import Settings
from libs.rpc.server import DependencyMonitor, DependencyProbe, GrpcServer, start_grpc_server
from libs.rpc.tls import TlsFiles, tls_from_settings

if TYPE_CHECKING:
    # Only named in annotations: the gateway runs a ServiceProcess and must not load SQLAlchemy.
    from libs.connections import ServiceConnections

log = logging.getLogger(__name__)

# A loop runs until the event it is given is set; it then finishes its current work and returns.
Loop = Callable[[asyncio.Event], Awaitable[None]]


class Closeable(Protocol):
    """A resource the process closes on the way out (a bus, a channel, a database pool)."""

    async def close(self) -> None:
        """Releases the resource."""


class Listener(Protocol):
    """A server other than gRPC that the process runs (the gateway's HTTP server)."""

    async def start(self) -> Awaitable[None]:
        """Listens (raising if it cannot); returns what completes when the listener stops serving."""

    async def stop(self, grace_seconds: float) -> None:
        """Stops accepting; requests in flight get `grace_seconds` to finish."""


class BacklogSampler(Protocol):
    """What samples backlog gauges (queue depths, outbox lag) until stopping is set."""

    async def run(self, stopping: asyncio.Event, interval_seconds: float) -> None:
        """Samples every `interval_seconds` until `stopping` is set."""


class ProcessComponentFailed(RuntimeError):
    """A loop or listener of the process failed; the process stopped because of it."""


@dataclass(frozen=True)
class GrpcApi:
    """The gRPC server of a process: servicers, health (with dependency probes) and reflection."""

    address: str
    register: Sequence[Callable[[grpc.aio.Server], None]]
    service_names: Sequence[str]
    tls: TlsFiles | None = None
    # Probed every `health_check_seconds`; health is NOT_SERVING while one of `serving_needs`
    # (None: any of them) fails, the others are only reported.
    probes: Mapping[str, DependencyProbe] = field(default_factory=dict)
    health_check_seconds: float = 2.0
    serving_needs: frozenset[str] | None = None


@dataclass(frozen=True)
class Resources:
    """What the process holds open, closed after everything else in this order."""

    bus: Closeable | None = None
    clients: Sequence[Closeable] = ()
    channels: Sequence[grpc.aio.Channel] = ()
    database: Closeable | None = None

    def in_closing_order(self) -> list[Callable[[], Awaitable[None]]]:
        """Bus, then clients and channels, then database (see the module docstring for why)."""
        return [
            *([self.bus.close] if self.bus is not None else []),
            *(client.close for client in self.clients),
            # grace=None: calls still in flight on a channel are cancelled.
            *(functools.partial(channel.close, None) for channel in self.channels),
            *([self.database.close] if self.database is not None else []),
        ]


class ServiceProcess:
    """A service process: described with the `add_*` methods, then `run()` until stopping is set."""

    def __init__(self, name: str, *, grace_seconds: float, resources: Resources | None = None) -> None:
        self.name = name
        self.grace_seconds = grace_seconds
        self.resources = resources or Resources()
        self.grpc: GrpcServer | None = None
        self._grpc_api: GrpcApi | None = None
        self._listeners: list[Listener] = []
        self._started_listeners: list[Listener] = []
        self._consumers: list[Callable[[], Awaitable[object]]] = []
        self._loops: list[tuple[str, Loop, bool]] = []
        self._stopping = asyncio.Event()
        self._outer_stopping: asyncio.Event | None = None
        self._tasks: list[tuple[asyncio.Task[None], bool]] = []
        self._failure: tuple[str, BaseException] | None = None
        self._closing = False
        self._closed = asyncio.Event()

    def serve_grpc(self, api: GrpcApi) -> ServiceProcess:
        """Serves `api` (with health and reflection) from the start of `run()`."""
        self._grpc_api = api
        return self

    def add_listener(self, listener: Listener) -> ServiceProcess:
        """Runs `listener` next to the gRPC server and stops it at the same step."""
        self._listeners.append(listener)
        return self

    def add_consumer(self, start: Callable[[], Awaitable[object]]) -> ServiceProcess:
        """Calls `start` (which subscribes a consumer on the bus) once the servers listen."""
        self._consumers.append(start)
        return self

    def add_loop(self, name: str, loop: Loop, *, holds_work: bool = True) -> ServiceProcess:
        """Runs `loop(stopping)` in the background.

        A loop that `holds_work` (a relay, a deliverer) gets the grace period to return once
        stopping is set; one that does not (a monitor, a gauge sampler) is cancelled at once.
        """
        self._loops.append((name, loop, holds_work))
        return self

    async def run(self, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Starts everything, sets `ready`, serves until `stopping` is set, then `close()`s.

        Raises `ProcessComponentFailed` (after closing) if a loop or listener failed; a failure
        also sets `stopping`, so the rest of an embedding process stops too.
        """
        self._outer_stopping = stopping
        try:
            await self._start()
            if self.grpc is not None:
                log.info("%s serving gRPC on port %d", self.name, self.grpc.port)
            if ready is not None:
                ready.set()
            outer = asyncio.ensure_future(stopping.wait())
            inner = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({outer, inner}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                outer.cancel()
                inner.cancel()
        finally:
            await self.close()
        if self._failure is not None:
            name, error = self._failure
            raise ProcessComponentFailed(f"{self.name}: {name} failed") from error

    async def _start(self) -> None:
        api = self._grpc_api
        if api is not None:
            self.grpc = await start_grpc_server(api.address, api.register, api.service_names, tls=api.tls)
            if api.probes:
                monitor = DependencyMonitor(
                    self.grpc,
                    api.probes,
                    interval_seconds=api.health_check_seconds,
                    required=api.serving_needs,
                )
                self._watch(f"{self.name}-dependency-monitor", monitor.run(self._stopping), holds_work=False)
        for listener in self._listeners:
            serving = await listener.start()
            self._started_listeners.append(listener)
            # Waited for, not cancelled, at close: `stop()` ends it gracefully.
            self._watch(f"{self.name}-{type(listener).__name__}", serving, holds_work=True, listener=True)
        for start in self._consumers:
            await start()
        for name, loop, holds_work in self._loops:
            self._watch(name, loop(self._stopping), holds_work=holds_work)

    def _watch(self, name: str, work: Awaitable[None], *, holds_work: bool, listener: bool = False) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("%s failed; stopping the process", name)
                self._fail(name, error)
            else:
                # A listener serves until it is stopped: ending on its own is a failure too.
                if listener and not self._closing:
                    log.error("%s stopped serving on its own; stopping the process", name)
                    self._fail(name, RuntimeError(f"{name} stopped serving"))

        self._tasks.append((asyncio.create_task(guarded(), name=name), holds_work))

    def _fail(self, name: str, error: BaseException) -> None:
        if self._failure is None:
            self._failure = (name, error)
        self._stopping.set()
        if self._outer_stopping is not None:
            self._outer_stopping.set()

    async def close(self) -> None:
        """Stops taking work, drains within the grace period, cancels the rest, closes resources."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        began = time.monotonic()
        self._stopping.set()
        try:
            await self._drain(began)
        finally:
            await self._cancel_all()
            await self._close_resources()
            self._closed.set()

    async def _drain(self, began: float) -> None:
        for task, holds_work in self._tasks:
            if not holds_work:
                task.cancel()
        stops = [listener.stop(self.grace_seconds) for listener in self._started_listeners]
        if self.grpc is not None:
            stops.append(self.grpc.stop(self.grace_seconds))
        await asyncio.gather(*stops)
        draining = [task for task, holds_work in self._tasks if holds_work and not task.done()]
        if draining:
            left = max(0.0, self.grace_seconds - (time.monotonic() - began))
            _, late = await asyncio.wait(draining, timeout=left)
            for task in late:
                log.warning("%s did not stop within %.1f s; cancelled", task.get_name(), self.grace_seconds)

    async def _cancel_all(self) -> None:
        tasks = [task for task, _ in self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_resources(self) -> None:
        for close in self.resources.in_closing_order():
            try:
                await close()
            except Exception:
                # The others must still be closed; the error is logged, not swallowed silently.
                log.exception("%s: closing %r failed", self.name, close)


# Every backend service gets this long to finish the calls and work in flight when it stops.
BACKEND_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class GrpcService:
    """The one gRPC service a backend process serves: where, how it registers, and its name."""

    address: str
    register: Callable[[grpc.aio.Server], None]
    name: str


def backend_process(
    name: str,
    settings: Settings,
    service: GrpcService,
    connections: ServiceConnections,
    gauges: BacklogSampler,
    *,
    clients: Sequence[Closeable] = (),
) -> ServiceProcess:
    """A backend service's process, to which its consumers and loops are then added.

    It serves `service` (TLS from the settings) with health turning NOT_SERVING while the database
    or the broker does not answer, samples the backlog `gauges`, and on the way out closes the
    bus, `clients`, the channel and the database.
    """
    process = ServiceProcess(
        name,
        grace_seconds=BACKEND_GRACE_SECONDS,
        resources=Resources(
            bus=connections.bus,
            clients=clients,
            channels=[connections.channel],
            database=connections.database,
        ),
    )
    api = GrpcApi(
        service.address,
        [service.register],
        [service.name],
        tls=tls_from_settings(settings),
        probes={"database": connections.database.ping, "broker": connections.bus.ping},
        health_check_seconds=settings.health_check_interval_seconds,
        # Every RPC needs the database; none needs the broker (events wait in the outbox), so a
        # broker restart must not take the API down with it (ADR-142).
        serving_needs=frozenset({"database"}),
    )
    return process.serve_grpc(api).add_loop(
        f"{name}-backlog-gauges",
        lambda stopping: gauges.run(stopping, settings.backlog_sample_seconds),
        holds_work=False,
    )
