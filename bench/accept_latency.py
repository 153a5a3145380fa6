"""Benchmark 1: accept latency of a 10,000-item batch, against its floor measured in the same run.

Floor: parse the same JSON body with orjson, COPY the same task rows into a same-shaped table,
insert one batch row; that is the least any implementation must do.
"""

from __future__ import annotations

import argparse
import uuid

import httpx
import orjson
import psycopg

from bench.harness import Stopwatch, customer, percentile, report, running_stack


def _body(items: int) -> bytes:
    return orjson.dumps(
        {
            "items": [
                {"prompt": f"A cinematic shot number {i} of a cat playing piano", "model": "sora-2"}
                for i in range(items)
            ]
        }
    )


def measure_floor(database_url: str, body: bytes, runs: int) -> list[float]:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    samples = []
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE floor_batches (id uuid primary key, tenant_id uuid, request_id text,"
            " total int, created_at timestamptz default now())"
        )
        conn.execute(
            "CREATE TEMP TABLE floor_tasks (id uuid primary key, batch_id uuid, tenant_id uuid,"
            " batch_index int, prompt text, model text, unit_price bigint, status text,"
            " attempts int default 0, created_at timestamptz default now(), unique (batch_id, batch_index))"
        )
        conn.commit()
        tenant = uuid.uuid4()
        for _ in range(runs):
            with Stopwatch() as watch:
                items = orjson.loads(body)["items"]
                batch_id = uuid.uuid4()
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO floor_batches (id, tenant_id, request_id, total)"
                        " VALUES (%s, %s, %s, %s)",
                        (batch_id, tenant, str(batch_id), len(items)),
                    )
                    with conn.cursor().copy(
                        "COPY floor_tasks (id, batch_id, tenant_id, batch_index, prompt, model,"
                        " unit_price, status) FROM STDIN"
                    ) as copy:
                        for index, item in enumerate(items):
                            copy.write_row(
                                (
                                    uuid.uuid4(),
                                    batch_id,
                                    tenant,
                                    index,
                                    item["prompt"],
                                    item["model"],
                                    10,
                                    "queued",
                                )
                            )
            samples.append(watch.seconds)
    return samples


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    items, runs = (200, 3) if args.quick else (10_000, 8)
    body = _body(items)
    with running_stack(workers=0) as stack:
        api, who = customer(stack, credits=items * 10 * (runs + 1))
        floor = measure_floor(stack.database_url, body, runs)
        samples = []
        with httpx.Client(base_url=stack.base_url, timeout=60) as http:
            for _ in range(runs + 1):
                with Stopwatch() as watch:
                    response = http.post(
                        "/api/enterprise/video-batch",
                        content=body,
                        headers={**who.headers, "Content-Type": "application/json"},
                    )
                assert response.status_code == 202, response.text
                samples.append(watch.seconds)
        samples = samples[1:]  # the first request warms connections and caches
        api.http.close()
    p50, p95, floor50 = percentile(samples, 0.5), percentile(samples, 0.95), percentile(floor, 0.5)
    return report(
        "accept_latency",
        [
            ("items per batch", f"{items}"),
            ("runs", f"{runs}"),
            ("gateway p50 / p95", f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms"),
            ("floor p50 (orjson + COPY + insert)", f"{floor50 * 1000:.0f} ms"),
            ("ratio p50 / floor", f"{p50 / floor50:.1f}x (target <= 8x, p50 < 300 ms)"),
        ],
        {
            "items": items,
            "p50_ms": p50 * 1000,
            "p95_ms": p95 * 1000,
            "floor_p50_ms": floor50 * 1000,
            "ratio": p50 / floor50,
        },
    )


if __name__ == "__main__":
    main()
