"""The Celery baseline: a no-op task that reports its execution with one UDP datagram."""

from __future__ import annotations

import os
import socket

from celery import Celery

app = Celery(
    "bench_noop", broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
)
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = 64
app.conf.task_default_queue = "bench_noop"
_REPORT_TO = ("127.0.0.1", int(os.environ.get("BENCH_CELERY_REPORT_PORT", "0")))
_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(index: int) -> None:
    """Does nothing but say it ran."""
    _sock.sendto(str(index).encode(), _REPORT_TO)
