"""Soak 1: a sustained run of many tasks through the distributed stack, beside Celery.

System: every service its own process, 2 workers, the simulated provider at zero latency. N tasks
(default 1,000,000) arrive as 10,000-item batches from 10 tenants, at most `--open-batches`
unsettled at once (the backlog stays bounded: a new batch is posted when one settles), 1 item in
50 refused by the provider so refunds run all along. Printed every 10 s: tasks finished per second
over the interval. Measured: RSS of every process after a warm-up and at the end (growth target
<= 20%), the outbox rows and RabbitMQ messages left at the end (must be 0), I1-I5 afterwards
(`bench.harness.running_stack`). Baseline: Celery no-op tasks on the same broker, in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.harness import report, running_stack, video_directory
from bench.pipeline_throughput import celery_baseline
from tests.rest_api import Api, Customer
from tests.stack import Stack

# A soak run is minutes long; on a host shared with others the stack may take one to start.
READY_TIMEOUT_SECONDS = 300.0
CREDITS_PER_VIDEO = 10
FAILING_EVERY = 50
POLL_SECONDS = 0.2
RSS_GROWTH_TARGET = 0.20
OUTBOXES = ("batch.outbox", "billing.outbox")


@dataclass
class Progress:
    """What the submitter knows of the run: batches open, tasks finished, the rate samples."""

    started: float = field(default_factory=time.monotonic)
    submitted: int = 0
    batches: int = 0
    settled: int = 0
    finished: int = 0
    open: dict[str, tuple[Customer, int]] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)


def _items(first: int, count: int) -> list[dict[str, str]]:
    return [
        {"prompt": f"soak {n}" + (" #fail" if n % FAILING_EVERY == 0 else ""), "model": "sora-2"}
        for n in range(first, first + count)
    ]


def _batch_status(api: Api, who: Customer, batch_id: str) -> dict[str, Any] | None:
    """The batch as its owner reads it; None when the gateway answered 503 (asked again later)."""
    response = api.http.get(f"/api/enterprise/video-batch/{batch_id}", headers=who.headers)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_tasks(
    api: Api,
    tenants: list[Customer],
    *,
    tasks: int,
    batch_items: int,
    open_batches: int,
    videos: Path,
    report_seconds: float | None,
) -> Progress:
    """Posts `tasks` tasks in batches round-robin over `tenants`, keeping at most `open_batches`
    unsettled, until every one has settled; prints the rate every `report_seconds` (None: quiet).

    Each settled batch's videos are deleted (a customer fetching them): a million small files
    would otherwise hold gigabytes of the machine's memory (tmpfs) or disk.
    """
    progress = Progress()
    next_report = progress.started + (report_seconds or 0)
    last = (progress.started, 0)
    while progress.submitted < tasks or progress.open:
        while len(progress.open) < open_batches and progress.submitted < tasks:
            count = min(batch_items, tasks - progress.submitted)
            who = tenants[progress.batches % len(tenants)]
            created = api.create_batch(who, _items(progress.submitted, count), request_id=str(uuid.uuid4()))
            assert created.status_code == 202, created.text
            progress.open[created.json()["batch_id"]] = (who, count)
            progress.submitted += count
            progress.batches += 1
        running = 0
        for batch_id, (who, count) in list(progress.open.items()):
            batch = _batch_status(api, who, batch_id)
            if batch is None:
                continue
            if batch["settlement_status"] != "pending":
                assert batch["pending_count"] == 0, batch
                del progress.open[batch_id]
                progress.settled += count
                shutil.rmtree(videos / batch_id, ignore_errors=True)
            else:
                running += count - batch["pending_count"]
        progress.finished = progress.settled + running
        now = time.monotonic()
        if report_seconds is not None and now >= next_report:
            rate = (progress.finished - last[1]) / (now - last[0])
            load = os.getloadavg()[0]
            progress.samples.append(
                {"at_s": round(now - progress.started, 1), "finished": progress.finished, "tasks_per_s": rate}
            )
            print(
                f"  {now - progress.started:6.0f} s  {progress.finished:>9,} finished"
                f"  {rate:7.0f} tasks/s  ({len(progress.open)} batches open, load {load:.1f})",
                flush=True,
            )
            last = (now, progress.finished)
            next_report = now + report_seconds
        time.sleep(POLL_SECONDS)
    return progress


def rss_mb(stack: Stack) -> dict[str, float]:
    """Resident memory of every process of the stack (with any children), in MB."""
    sizes = {}
    for name, process in stack.processes.items():
        try:
            root = psutil.Process(process.pid)
            family = [root, *root.children(recursive=True)]
            sizes[name] = round(sum(member.memory_info().rss for member in family) / 2**20, 1)
        except psutil.NoSuchProcess:
            sizes[name] = 0.0
    return sizes


def backlog(stack: Stack) -> dict[str, int]:
    """Rows left in each outbox and messages (ready and unacknowledged) in each queue of the
    stack's vhost, dead-letter queues included."""
    dsn = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    left: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        for table in OUTBOXES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            left[table] = int(row[0]) if row else -1
    vhost = stack.amqp_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listed.splitlines():
        name, _, messages = line.rpartition("\t")
        if name:
            left[f"queue {name}"] = int(messages)
    return left


def drained_backlog(stack: Stack, timeout: float = 120) -> dict[str, int]:
    """The backlog once it is empty, or as it stands after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = backlog(stack)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(1)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few thousand tasks (seconds)")
    parser.add_argument("--tasks", type=int, help="tasks in the measured run (default 1,000,000)")
    parser.add_argument("--batch-items", type=int, help="items per batch (default 10,000)")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--open-batches", type=int, default=3, help="unsettled batches at most")
    parser.add_argument("--celery-tasks", type=int, help="Celery baseline tasks (default 100,000)")
    parser.add_argument("--report-seconds", type=float, default=10.0)
    parser.add_argument("--videos-on-disk", action="store_true")
    args = parser.parse_args(argv)
    tasks = args.tasks or (3_000 if args.quick else 1_000_000)
    batch_items = args.batch_items or (500 if args.quick else 10_000)
    celery_tasks = args.celery_tasks or (500 if args.quick else 100_000)
    warm_up = min(tasks, args.open_batches * batch_items)
    # Round-robin from the first tenant in each run: the first tenants get one batch more.
    batches = -(-warm_up // batch_items) + -(-tasks // batch_items)
    per_tenant = (batches // args.tenants + 2) * batch_items
    with (
        video_directory(args.videos_on_disk) as (videos, in_memory),
        running_stack(workers=2, ready_timeout=READY_TIMEOUT_SECONDS, asset_dir=videos) as stack,
    ):
        api = Api(stack.base_url)
        tenants = [api.new_customer(credits=per_tenant * CREDITS_PER_VIDEO) for _ in range(args.tenants)]
        rss_cold = rss_mb(stack)
        # Pools, caches and the allocator's arenas fill on the first batches; growth is counted
        # from there, as a long run would see it.
        run_tasks(
            api,
            tenants,
            tasks=warm_up,
            batch_items=batch_items,
            open_batches=args.open_batches,
            videos=Path(videos),
            report_seconds=None,
        )
        rss_start = rss_mb(stack)
        print(f"\nsustained run: {tasks:,} tasks in batches of {batch_items:,}", flush=True)
        progress = run_tasks(
            api,
            tenants,
            tasks=tasks,
            batch_items=batch_items,
            open_batches=args.open_batches,
            videos=Path(videos),
            report_seconds=args.report_seconds,
        )
        seconds = time.monotonic() - progress.started
        load_end = os.getloadavg()
        left = drained_backlog(stack)
        rss_end = rss_mb(stack)
        celery_seconds = celery_baseline(stack.amqp_url, celery_tasks, timeout=max(120.0, celery_tasks / 50))
        api.http.close()
    rate, celery_rate = tasks / seconds, celery_tasks / celery_seconds
    growth = {name: rss_end[name] / rss_start[name] - 1 for name in rss_start if rss_start[name]}
    worst = max(growth, key=lambda name: growth[name])
    rates = [sample["tasks_per_s"] for sample in progress.samples]
    assert not any(left.values()), f"backlog left at the end: {left}"
    return report(
        "soak_sustained",
        [
            ("tasks", f"{tasks:,} in batches of {batch_items:,} from {args.tenants} tenants"),
            ("backlog bound", f"{args.open_batches} unsettled batches"),
            ("simulated videos written to", "memory (tmpfs)" if in_memory else "disk"),
            ("reelbatch: first POST -> last settled", f"{seconds:.0f} s = {rate:.0f} tasks/s"),
            (
                "tasks/s per 10 s (min / median / max)",
                f"{min(rates):.0f} / {sorted(rates)[len(rates) // 2]:.0f} / {max(rates):.0f}"
                if rates
                else "run shorter than one interval",
            ),
            (
                "celery no-op baseline",
                f"{celery_tasks:,} in {celery_seconds:.1f} s = {celery_rate:.0f} tasks/s",
            ),
            ("reelbatch / celery", f"{rate / celery_rate:.2f}x"),
            *[
                (
                    f"RSS {name}",
                    f"{rss_cold[name]:.0f} cold, {rss_start[name]:.0f} -> {rss_end[name]:.0f} MB"
                    f" ({growth.get(name, 0.0):+.0%})",
                )
                for name in rss_start
            ],
            ("largest RSS growth", f"{worst} {growth[worst]:+.0%} (target <= +{RSS_GROWTH_TARGET:.0%})"),
            (
                "backlog at the end",
                "0 outbox rows, 0 queued messages" if not any(left.values()) else str(left),
            ),
            ("load average at the end (1/5/15 min)", " / ".join(f"{value:.1f}" for value in load_end)),
            ("money", "I1-I5 clean after every batch settled"),
        ],
        {
            "tasks": tasks,
            "batch_items": batch_items,
            "tenants": args.tenants,
            "open_batches": args.open_batches,
            "videos_in_memory": in_memory,
            "seconds": seconds,
            "tasks_per_s": rate,
            "rate_samples": progress.samples,
            "celery_tasks": celery_tasks,
            "celery_tasks_per_s": celery_rate,
            "vs_celery": rate / celery_rate,
            "rss_mb_cold": rss_cold,
            "rss_mb_start": rss_start,
            "rss_mb_end": rss_end,
            "rss_growth": growth,
            "rss_growth_met": growth[worst] <= RSS_GROWTH_TARGET,
            "backlog_end": left,
            "load_average_end": load_end,
        },
    )


if __name__ == "__main__":
    main()
