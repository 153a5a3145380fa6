"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive connections, pre-encoded requests.

httpx costs about 1.5 ms of CPU per request, which on a 2-core machine takes the CPU the server
under test needs; this client costs a few tens of microseconds. Two modes:

- closed loop: each connection sends its next request as soon as the previous answer arrived
  (measures capacity; latency then includes queueing behind the other clients);
- open loop: requests are started at a fixed rate whatever the answers do, and each latency is
  counted from the moment the request was due, so a stalled server is not hidden by clients
  that stopped asking (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One pre-encoded request."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class LoadResult:
    """Latencies in seconds and the HTTP status of every request, over `elapsed` seconds."""

    latencies: list[float]
    statuses: list[int]
    elapsed: float
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000

    def summary(self) -> dict[str, float]:
        return {
            "requests": len(self.latencies),
            "errors": self.errors + sum(1 for status in self.statuses if status >= 400),
            "rps": self.rate,
            "p50_ms": self.percentile_ms(0.50),
            "p90_ms": self.percentile_ms(0.90),
            "p99_ms": self.percentile_ms(0.99),
            "max_ms": self.percentile_ms(1.0),
        }


class _Connection:
    """One keep-alive connection; answers must carry Content-Length (every JSON answer does)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self.close()
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def closed_loop(
    base_url: str, requests: Sequence[Request], clients: int, *, seconds: float = 0.0, total: int = 0
) -> LoadResult:
    """`clients` connections cycle through `requests` for `seconds`, or until `total` were sent."""
    host, port = _host_port(base_url)
    encoded = [request.encode(f"{host}:{port}") for request in requests]
    result = LoadResult([], [], 0.0)
    next_index = 0
    deadline = time.perf_counter() + seconds if seconds else float("inf")

    async def client() -> None:
        nonlocal next_index
        connection = _Connection(host, port)
        try:
            while time.perf_counter() < deadline and (not total or next_index < total):
                raw = encoded[next_index % len(encoded)]
                next_index += 1
                started = time.perf_counter()
                try:
                    status, _ = await connection.send(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    connection.close()
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses.append(status)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.elapsed = time.perf_counter() - started
    return result


async def open_loop(
    base_url: str, requests: Sequence[Request], clients: int, *, rate: float, seconds: float
) -> LoadResult:
    """Starts `rate` requests per second for `seconds` over at most `clients` connections."""
    host, port = _host_port(base_url)
    encoded = [request.encode(f"{host}:{port}") for request in requests]
    result = LoadResult([], [], 0.0)
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def client() -> None:
        connection = _Connection(host, port)
        try:
            while (item := await due.get()) is not None:
                index, due_at = item
                try:
                    status, _ = await connection.send(encoded[index % len(encoded)])
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    connection.close()
                    continue
                # From when the request was due, not when a connection got free to send it.
                result.latencies.append(time.perf_counter() - due_at)
                result.statuses.append(status)
        finally:
            connection.close()

    workers = [asyncio.create_task(client()) for _ in range(clients)]
    started = time.perf_counter()
    count = int(rate * seconds)
    for index in range(count):
        due_at = started + index / rate
        delay = due_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((index, due_at))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    result.elapsed = time.perf_counter() - started
    return result


def _host_port(base_url: str) -> tuple[str, int]:
    hostport = base_url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)
