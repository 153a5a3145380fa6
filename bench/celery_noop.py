"""The Celery baseline: a no-op task that reports its execution by appending one byte to a file."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bench_noop", broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
)
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 64
app.conf.task_default_queue = "bench_noop"
# O_APPEND writes of one byte are atomic across the worker processes; the file's size counts runs.
_report = os.open(
    os.environ.get("BENCH_CELERY_REPORT_FILE", os.devnull), os.O_WRONLY | os.O_APPEND | os.O_CREAT
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(index: int) -> None:
    """Does nothing but say it ran."""
    os.write(_report, b"x")
