"""Load generator for the read path, run as its own process: closed loop of N clients for T seconds."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


async def run(base_url: str, api_key: str, batch_id: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    paths = [
        f"/api/enterprise/video-batch/{batch_id}",
        f"/api/enterprise/video-batch/{batch_id}/tasks?limit=50",
    ]

    async def client(http: httpx.AsyncClient, offset: int) -> None:
        nonlocal errors
        turn = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await http.get(paths[turn % 2])
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1  # counted, not fatal: an overloaded server is a result to report
            latencies.append(time.perf_counter() - started)
            turn += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-API-Key": api_key}, timeout=30, limits=limits
    ) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("batch_id")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(
        json.dumps(asyncio.run(run(args.base_url, args.api_key, args.batch_id, args.clients, args.seconds)))
    )
