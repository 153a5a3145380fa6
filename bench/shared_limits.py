"""Micro-benchmark of the shared rate limit (ADR-128): what a request pays for a limit that holds
across gateway replicas, against the per-process bucket it replaced.

Run alone (`uv run python -m bench.shared_limits`, about 20 s; not part of `make bench`). A real
billing process on a fresh migrated database serves the draws; this process plays the gateway.
Each case takes N tokens one request at a time and reports, per request, the wall time and the
CPU of this process (the gateway's side), of the billing process, and of PostgreSQL's backends:

- memory: the rule alone, in memory (what one process used to do; no replica shares it);
- leased: `SharedRateLimiter` serving from a lease (the common case: no round trip);
- billing draw: `SharedRateLimiter` with leases of one token (every request draws over gRPC);
- direct SQL: the one-statement draw on a pooled psycopg connection (the gateway's own schema,
  the alternative not taken).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.db import Database
from libs.rpc.client import open_channel
from libs.token_bucket import draw
from services.billing.adapters.sql.limits import draw_tokens
from services.gateway.http.rate_limits import SharedBuckets, SharedRateLimiter
from tests.isolation import ADMIN_DSN, create_migrated_database, drop_database
from tests.stack import fast_settings, free_port, spawn, stop_process

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _postgres_cpu(database: str) -> float:
    # The backends serving this database (each pid's own utime + stime).
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        pids = [
            row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
        ]
    total = 0.0
    for pid in pids:
        try:
            total += _process_cpu(pid)
        except FileNotFoundError:
            continue
    return total


async def _measure(
    name: str, take: Callable[[], Awaitable[object]], count: int, billing_pid: int, database: str
) -> dict[str, Any]:
    for _ in range(min(200, count)):  # warm up connections, prepared statements, channels
        await take()
    wall, cpu = time.perf_counter(), time.process_time()
    billing_cpu, pg_cpu = _process_cpu(billing_pid), _postgres_cpu(database)
    for _ in range(count):
        await take()
    per = 1e6 / count
    return {
        "case": name,
        "wall_us": round((time.perf_counter() - wall) * per, 1),
        "gateway_cpu_us": round((time.process_time() - cpu) * per, 1),
        "billing_cpu_us": round((_process_cpu(billing_pid) - billing_cpu) * per, 1),
        "postgres_cpu_us": round((_postgres_cpu(database) - pg_cpu) * per, 1),
    }


async def _run(
    count: int, billing_address: str, database_url: str, billing_pid: int, database: str
) -> list[dict[str, Any]]:
    channel = open_channel(billing_address)
    buckets = SharedBuckets(billing_pb2_grpc.BillingServiceStub(channel), 5.0)
    db = Database(database_url, pool_size=2)
    state: dict[str, Any] = {"bucket": None, "now": 0.0}

    def in_memory() -> Awaitable[None]:
        state["now"] += 1e-6
        state["bucket"] = draw(state["bucket"], state["now"], wanted=1, rate=1e9, burst=10**9).bucket
        return asyncio.sleep(0)

    leased = SharedRateLimiter(buckets, 1e6, 10**7)  # leases of 1,000
    per_request = SharedRateLimiter(buckets, 1.0, 10**7)  # leases of 1: a draw per request

    async def direct() -> None:
        async with db.raw_connection() as conn:
            await draw_tokens(conn, "bench:direct", wanted=1, rate=1.0, burst=10**7)

    try:
        return [
            await _measure("memory", in_memory, count, billing_pid, database),
            await _measure("leased", lambda: leased.acquire("leased"), count, billing_pid, database),
            await _measure(
                "billing draw", lambda: per_request.acquire("drawn"), count, billing_pid, database
            ),
            await _measure("direct SQL", direct, count, billing_pid, database),
        ]
    finally:
        await db.close()
        await channel.close(None)


def _wait_until_listening(address: str, billing: subprocess.Popen[bytes]) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if billing.poll() is not None:
            raise RuntimeError(f"billing exited with {billing.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            time.sleep(0.1)
            continue
        time.sleep(1.0)  # the channel's health check and the pool settle
        return
    raise RuntimeError("billing did not listen within 60 s")


def main() -> None:
    """Prints one JSON line per case."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    name, url = create_migrated_database()
    workdir = Path(f"/tmp/bench-shared-limits-{name}")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **fast_settings(workdir, free_port()),
        "REELBATCH_DATABASE_URL": url,
        "REELBATCH_BUS": "postgres",
    }
    billing = spawn(workdir, "billing", ["serve", "billing"], env)
    try:
        address = env["REELBATCH_BILLING_GRPC_ADDR"]
        _wait_until_listening(address, billing)
        for row in asyncio.run(_run(args.count, address, url, billing.pid, name)):
            print(json.dumps(row))
    finally:
        stop_process(billing, signal.SIGTERM, 10)
        drop_database(name)


if __name__ == "__main__":
    main()
