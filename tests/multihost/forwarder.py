"""A TCP forwarder: the namespaced hosts reach the machine's loopback-only servers through it.

`python -m tests.multihost.forwarder LISTEN=TARGET ...` (each `host:port`) listens on every
LISTEN address and copies bytes both ways between each accepted connection and a new connection
to its TARGET; a side that closes or fails closes the other. It prints `ready` once every
listener is bound and runs until SIGTERM. PostgreSQL and RabbitMQ then see connections from
127.0.0.1 (trust and the guest user's loopback rule apply) and need no reconfiguration.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import uvloop

CHUNK_BYTES = 256 * 1024


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError, RuntimeError):
        # The other direction closed this writer first (uvloop raises RuntimeError then).
        pass
    finally:
        writer.close()


def _forward_to(
    target: tuple[str, int],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        for writer in (client_writer, server_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Either direction ending closes both sockets, which ends the other direction too.
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    return handle


async def forward(routes: list[tuple[str, str]]) -> None:
    """Serves every `(listen, target)` route until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    servers = [
        await asyncio.start_server(_forward_to(_split(target)), *_split(listen), reuse_address=True)
        for listen, target in routes
    ]
    print("ready", flush=True)
    await stopping.wait()
    for server in servers:
        server.close()


def main() -> None:
    """Entry point: `python -m tests.multihost.forwarder LISTEN=TARGET ...`."""
    routes = [argument.split("=", 1) for argument in sys.argv[1:]]
    uvloop.run(forward([(listen, target) for listen, target in routes]))


if __name__ == "__main__":
    main()
