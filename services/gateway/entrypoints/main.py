"""The gateway process: uvicorn serving the REST API (a listener of libs/service_process.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Iterator

import uvicorn

from libs.config import Settings
from libs.service_process import Resources, ServiceProcess
from services.gateway.bootstrap import build_backends
from services.gateway.entrypoints.app import create_app
from services.gateway.http.protocol import JsonErrorHttpProtocol

log = logging.getLogger(__name__)

# In-flight requests get this long to finish once stopping is set.
GRACE_SECONDS = 10


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process and reports when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's `stopping` event decides when to stop, not uvicorn's own handlers.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


def _bind(host: str, port: int) -> socket.socket:
    # Bound here rather than by uvicorn so a busy port raises OSError instead of exiting the process.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the listener's
    # proto is TCP; with proto 0 every keep-alive response waited ~40 ms for a delayed ACK (Nagle).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.set_inheritable(True)
    except OSError:
        listener.close()
        raise
    return listener


class UvicornListener:
    """The HTTP server as a `libs.service_process.Listener`: uvicorn on a socket bound here."""

    def __init__(self, config: uvicorn.Config, host: str, port: int) -> None:
        self._server = _EmbeddedServer(config)
        self._host = host
        self._port = port
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> Awaitable[None]:
        listener = _bind(self._host, self._port)
        serving = asyncio.create_task(self._server.serve(sockets=[listener]), name="gateway-http")
        self._serving = serving
        listening = asyncio.ensure_future(self._server.listening.wait())
        try:
            await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
        if not self._server.listening.is_set():
            await serving  # raises what made the start-up fail, if anything raised
            raise RuntimeError("the gateway's HTTP server did not start (see the log above)")
        host, port = listener.getsockname()[:2]
        log.info("gateway listening on http://%s:%s", host, port)
        return serving

    async def stop(self, grace_seconds: float) -> None:
        # uvicorn drains within its own timeout_graceful_shutdown (set from the same grace period).
        self._server.should_exit = True
        if self._serving is not None:
            await asyncio.gather(self._serving, return_exceptions=True)


def build_process(settings: Settings) -> ServiceProcess:
    """The gateway process: uvicorn serving the REST API, and the channels to the services."""
    connections = build_backends(settings)
    config = uvicorn.Config(
        create_app(settings, connections.backends),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        lifespan="on",
        access_log=False,
        # Requests the parser refuses get the JSON error envelope too.
        http=JsonErrorHttpProtocol,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    process = ServiceProcess(
        "gateway", grace_seconds=GRACE_SECONDS, resources=Resources(clients=[connections])
    )
    process.add_listener(UvicornListener(config, settings.http_host, settings.http_port))
    feed = connections.backends.invalidations
    if feed is not None:
        # Holds no work: cancelled at once on stop (caches just stop being trusted).
        process.add_loop("gateway-invalidations", feed.run, holds_work=False)
    return process


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Serves the REST API on settings.http_host:http_port until `stopping` is set, then drains."""
    await build_process(settings).run(stopping, ready)
