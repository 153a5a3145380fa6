"""Runs the gateway's HTTP server until asked to stop.

`python -m services.gateway.entrypoints.main` runs it as its own process (SIGTERM/SIGINT stop it);
an embedding process calls `serve` with its own stopping event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from libs.config import Settings, load_settings
from libs.lifecycle import run_process
from libs.telemetry import configure_telemetry
from services.gateway.bootstrap import build_backends
from services.gateway.entrypoints.app import create_app
from services.gateway.http.protocol import JsonErrorHttpProtocol

log = logging.getLogger(__name__)

# In-flight requests get this long to finish once stopping is set.
SHUTDOWN_GRACE_SECONDS = 10


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


async def serve(settings: Settings, stopping: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Serves the REST API on settings.http_host:http_port until `stopping` is set, then drains."""
    connections = build_backends(settings)
    try:
        app = create_app(settings, connections.backends)
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            lifespan="on",
            access_log=False,
            # Requests the parser refuses get the JSON error envelope too.
            http=JsonErrorHttpProtocol,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        server = _EmbeddedServer(config)
        listener = _bind(settings.http_host, settings.http_port)
        serving = asyncio.create_task(server.serve(sockets=[listener]), name="gateway-http")
        stop_requested = asyncio.create_task(stopping.wait(), name="gateway-stopping")
        listening = asyncio.create_task(server.listening.wait(), name="gateway-listening")
        try:
            await asyncio.wait({serving, stop_requested, listening}, return_when=asyncio.FIRST_COMPLETED)
            if server.listening.is_set():
                host, port = listener.getsockname()[:2]
                log.info("gateway listening on http://%s:%s", host, port)
                if ready is not None:
                    ready.set()
            await asyncio.wait({serving, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            stop_requested.cancel()
            listening.cancel()
            await serving
    finally:
        await connections.close()


def main() -> None:
    """Runs the gateway as its own process."""
    settings = load_settings()
    configure_telemetry("gateway", settings.log_level)
    run_process(lambda stopping: serve(settings, stopping))


if __name__ == "__main__":
    main()
