"""Benchmark 2: tasks settled per second end to end, against the broker's floor and Celery.

System: a 5,000-item batch (simulated provider, zero latency) through dispatch, claim, provider,
outcome, capture/refund, batch finish and settlement, with 2 worker processes, after a warm-up
batch; the simulated videos are written to memory (tmpfs) where the machine has it.
Floor: aio-pika publish (confirmed) + consume + ack of 5,000 persistent messages on the same broker.
Baseline: 5,000 no-op Celery tasks on the same broker (2 prefork processes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aio_pika

from bench.harness import Stopwatch, customer, report, running_stack, video_directory

SETTLED_POLL_SECONDS = 0.05
WARM_UP_ITEMS = 100


async def broker_floor(amqp_url: str, count: int) -> float:
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("bench.floor", durable=True, arguments={"x-queue-type": "quorum"})
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=500)
        consume_queue = await consume_channel.get_queue("bench.floor")
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == count:
                done.set()

        started = time.perf_counter()
        await consume_queue.consume(on_message)
        for start in range(0, count, 256):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body=b"x" * 200, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue.name,
                    )
                    for _ in range(start, min(count, start + 256))
                )
            )
        await done.wait()
        elapsed = time.perf_counter() - started
        await queue.delete(if_unused=False, if_empty=False)
        return elapsed


def celery_baseline(amqp_url: str, count: int, timeout: float = 120) -> float:
    """Seconds for `count` no-op Celery tasks (2 prefork processes) to run on the broker, after one
    warm-up task; fails after `timeout` seconds of waiting."""
    report_file = Path(tempfile.mkdtemp(prefix="bench-celery-")) / "runs"
    report_file.touch()
    env = {**os.environ, "BENCH_CELERY_BROKER": amqp_url, "BENCH_CELERY_REPORT_FILE": str(report_file)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_noop",
            "worker",
            "--concurrency=2",
            "--pool=prefork",
            "--loglevel=WARNING",
            "-Q",
            "bench_noop",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def runs() -> int:
        return report_file.stat().st_size

    def wait_for(expected: int) -> None:
        deadline = time.monotonic() + timeout
        while runs() < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery ran {runs()} of {expected} tasks")
            time.sleep(0.005)

    try:
        os.environ["BENCH_CELERY_BROKER"] = amqp_url
        from bench.celery_noop import app, noop

        app.conf.broker_url = amqp_url
        noop.delay(-1)  # warm-up: the worker is up once one task has run
        wait_for(1)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for index in range(count):
                noop.apply_async((index,), producer=producer)
        wait_for(count + 1)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(20)
        shutil.rmtree(report_file.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--videos-on-disk", action="store_true")
    args = parser.parse_args(argv)
    items = 200 if args.quick else 5_000
    with (
        video_directory(args.videos_on_disk) as (videos, in_memory),
        running_stack(workers=2, asset_dir=videos) as stack,
    ):
        api, who = customer(stack, credits=(items + WARM_UP_ITEMS) * 10)
        # Warm up as the Celery baseline does (it waits for one task before timing): the first
        # batch of a fresh stack also pays connection pools, statement caches and prepares.
        warm_up = api.create_batch(who, [{"prompt": "warm up", "model": "sora-2"}] * WARM_UP_ITEMS)
        assert warm_up.status_code == 202, warm_up.text
        api.wait_until_settled(who, warm_up.json()["batch_id"], timeout=120)
        prompts = [
            {"prompt": f"shot {i}" + (" #fail" if i % 50 == 0 else ""), "model": "sora-2"}
            for i in range(items)
        ]
        with Stopwatch() as watch:
            created = api.create_batch(who, prompts)
            assert created.status_code == 202, created.text
            # A short poll: at 0.1 s the poll alone would add ~50 ms on average to a ~2 s run; much
            # shorter and the GETs (a few ms of CPU each) take a visible share of the 2 cores.
            batch = api.wait_until_settled(
                who, created.json()["batch_id"], timeout=600, poll_seconds=SETTLED_POLL_SECONDS
            )
        assert batch["pending_count"] == 0
        system_rate = items / watch.seconds
        floor_seconds = asyncio.run(broker_floor(stack.amqp_url, items))
        celery_seconds = celery_baseline(stack.amqp_url, items)
        api.http.close()
    floor_rate, celery_rate = items / floor_seconds, items / celery_seconds
    return report(
        "pipeline_throughput",
        [
            ("tasks", f"{items} (2 workers, zero provider latency)"),
            ("simulated videos written to", "memory (tmpfs)" if in_memory else "disk"),
            (
                "reelbatch: POST -> settled",
                f"{watch.seconds:.2f} s = {system_rate:.0f} tasks/s (target >= 1000)",
            ),
            ("floor: aio-pika publish+consume+ack", f"{floor_seconds:.2f} s = {floor_rate:.0f} msg/s"),
            ("ratio floor / reelbatch", f"{floor_rate / system_rate:.1f}x (target <= 5x)"),
            ("celery no-op baseline", f"{celery_seconds:.2f} s = {celery_rate:.0f} tasks/s"),
            ("reelbatch / celery", f"{system_rate / celery_rate:.2f}x (target > 1)"),
        ],
        {
            "tasks": items,
            "videos_in_memory": in_memory,
            "tasks_per_s": system_rate,
            "floor_msgs_per_s": floor_rate,
            "celery_tasks_per_s": celery_rate,
            "ratio_to_floor": floor_rate / system_rate,
            "vs_celery": system_rate / celery_rate,
        },
    )


if __name__ == "__main__":
    main()
