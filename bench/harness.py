"""Shared benchmark plumbing: a throw-away distributed stack, timers, percentiles, reporting."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.isolation import create_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api, Customer
from tests.stack import Stack


@contextmanager
def running_stack(workers: int = 2, **overrides: str) -> Iterator[Stack]:
    """Every service as its own process on a fresh database and vhost; removed afterwards."""
    db_name, database_url = create_database()
    vhost, amqp_url = create_vhost()
    with tempfile.TemporaryDirectory(prefix="reelbatch-bench-") as workdir:
        env = {
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0",
            "REELBATCH_LOG_LEVEL": "WARNING",
            # Benchmarks measure capacity: the per-key fairness limits (issue 8) would cap it.
            "REELBATCH_RATE_LIMIT_PER_SECOND": "0",
            "REELBATCH_MAX_OPEN_BATCHES": "0",
        }
        env.update({f"REELBATCH_{key.upper()}": value for key, value in overrides.items()})
        stack = Stack(database_url, amqp_url, Path(workdir), workers=workers, overrides=env)
        try:
            stack.start_all()
            yield stack
        finally:
            stack.stop_all()
            drop_database(db_name)
            delete_vhost(vhost)


def customer(stack: Stack, credits: int) -> tuple[Api, Customer]:
    api = Api(stack.base_url)
    return api, api.new_customer(credits=credits)


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"python": platform.python_version(), "cpu": cpu, "commit": commit}


def report(name: str, rows: list[tuple[str, str]], result: dict[str, Any]) -> dict[str, Any]:
    """Prints a small table and the machine-readable JSON line; returns the result."""
    width = max(len(label) for label, _ in rows)
    print(f"\n== {name}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print(json.dumps({"benchmark": name, **result, **machine()}))
    return result


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
