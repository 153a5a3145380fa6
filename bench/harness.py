"""Shared benchmark plumbing: a throw-away distributed stack, timers, percentiles, reporting."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from libs.config import Settings
from tests.invariants import check_invariants, wait_for_all_settled
from tests.isolation import ADMIN_DSN, create_migrated_database, create_vhost, delete_vhost, drop_database
from tests.rest_api import Api, Customer
from tests.stack import Stack

# Settings the test stack shortens for speed that a benchmark keeps at their production defaults.
PRODUCTION_TIMINGS = ("task_lease_seconds", "recovery_interval_seconds", "reserving_grace_seconds")
# How long every process of a benchmark's stack may take to answer.
READY_SECONDS = 180.0
# Where the simulated videos go unless a benchmark is asked to keep them on disk.
MEMORY_FS = Path("/dev/shm")


@contextmanager
def video_directory(on_disk: bool = False) -> Iterator[tuple[str, bool]]:
    """A temporary directory for the simulated provider's videos, and whether it is in memory.

    The simulated provider writes one small video file per task, inline on the worker's event loop
    (a real video is large and goes to a thread). On this machine's journal-less ext4, creating a
    file within minutes of mass deletions (any earlier benchmark's or test run's clean-up) costs up
    to ~1.4 ms of kernel CPU: 1,000 videos finishing together then stall a worker's loop for ~1.4 s.
    That is a property of the disk, not of the control plane, so the videos go to memory (tmpfs)
    where the machine has it; `on_disk` keeps them in the default temporary directory.
    """
    in_memory = not on_disk and MEMORY_FS.is_dir()
    with tempfile.TemporaryDirectory(prefix="bench-videos-", dir=MEMORY_FS if in_memory else None) as videos:
        yield videos, in_memory


@contextmanager
def running_stack(
    workers: int = 2, ready_timeout: float = READY_SECONDS, **overrides: str
) -> Iterator[Stack]:
    """Every service as its own process on a fresh database and vhost; removed afterwards.

    `ready_timeout`: how long the stack may take to start (minutes on a host shared with others).

    A benchmark that ends normally must leave the money right: I1-I5 are checked before the stack
    goes, once everything has settled when there are workers to run the tasks (without workers
    the accepted batches stay queued, their credits held, and are checked as they stand).
    """
    db_name, database_url = create_migrated_database()
    try:
        with stack_on(database_url, workers=workers, ready_timeout=ready_timeout, **overrides) as stack:
            yield stack
            assert_money_invariants(stack.database_url, settled=workers > 0)
    finally:
        drop_database(db_name)


@contextmanager
def stack_on(
    database_url: str, workers: int = 2, ready_timeout: float = READY_SECONDS, **overrides: str
) -> Iterator[Stack]:
    """Every service as its own process on an existing migrated database and a fresh vhost,
    with production's timings and no fairness limits; stopped (the database kept) afterwards.
    `ready_timeout`: how long every process may take to answer."""
    vhost, amqp_url = create_vhost()
    with tempfile.TemporaryDirectory(prefix="reelbatch-bench-") as workdir:
        env = {
            "REELBATCH_SIMULATED_LATENCY_SECONDS": "0",
            "REELBATCH_LOG_LEVEL": "WARNING",
            # Benchmarks measure capacity: the per-key fairness limits (issue 8) would cap it.
            "REELBATCH_RATE_LIMIT_PER_SECOND": "0",
            "REELBATCH_MAX_OPEN_BATCHES": "0",
            # The test stack shortens leases and the recovery loop's period so crash tests finish
            # fast; a benchmark measures what production runs (a 3 s lease was renewed every
            # second: ~40 ms of PostgreSQL per 1,000 running tasks, each time).
            **{
                f"REELBATCH_{name.upper()}": str(Settings.model_fields[name].default)
                for name in PRODUCTION_TIMINGS
            },
        }
        env.update({f"REELBATCH_{key.upper()}": value for key, value in overrides.items()})
        stack = Stack(database_url, amqp_url, Path(workdir), workers=workers, overrides=env, migrated=True)
        try:
            # A host this shared can take more than the tests' minute to start every process.
            stack.start_all(ready_timeout)
            # The previous benchmark's writes are flushed now, not by a checkpoint during this one.
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute("CHECKPOINT")
            yield stack
        finally:
            stack.stop_all()
            delete_vhost(vhost)


def assert_money_invariants(database_url: str, *, settled: bool = True) -> None:
    """I1-I5 (tests/invariants.py) hold; with `settled`, once every batch has finished and settled
    (waiting up to five minutes for it)."""
    if settled:
        wait_for_all_settled(database_url, timeout=300)
    else:
        check_invariants(database_url, require_settled=False).assert_clean()


def customer(stack: Stack, credits: int) -> tuple[Api, Customer]:
    api = Api(stack.base_url)
    return api, api.new_customer(credits=credits)


class CpuMeter:
    """CPU seconds used by each process of a stack, and by PostgreSQL's and RabbitMQ's, between two
    readings (from /proc; Linux only). On a shared 2-core machine CPU per operation says what
    limits a rate better than the rate itself."""

    def __init__(self, pids: Mapping[str, int], *, broker: bool = True) -> None:
        self._pids = dict(pids)
        self._broker = broker
        self._start = self._read()

    @classmethod
    def of(cls, stack: Stack, *, broker: bool = True) -> CpuMeter:
        """A meter of every process of the stack (and PostgreSQL's, and RabbitMQ's unless
        `broker` is False: for a path that does not use it, its own work is noise)."""
        return cls({name: process.pid for name, process in stack.processes.items()}, broker=broker)

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        """Milliseconds of CPU per operation since the meter was made, by process."""
        return {
            name: round(seconds * 1000 / max(operations, 1), 3) for name, seconds in self.seconds().items()
        }

    def seconds(self) -> dict[str, float]:
        """CPU seconds since the meter was made, by process."""
        now = self._read()
        return {name: now[name] - self._start.get(name, 0.0) for name in now}

    def _read(self) -> dict[str, float]:
        seconds = {name: _cpu_seconds(pid) for name, pid in self._pids.items()}
        seconds["postgres"] = sum(_cpu_seconds(pid) for pid in _processes_named("postgres"))
        if self._broker:
            # The broker's Erlang VM: every message costs it CPU on the same cores.
            seconds["rabbitmq"] = sum(_cpu_seconds(pid) for pid in _processes_named("beam.smp"))
        return seconds


class StolenTime:
    """The share of the machine's CPU time the hypervisor gave to other guests between two
    readings (`steal` in /proc/stat). On this shared VM it reached most of a core for seconds at a
    time: a rate or a tail latency measured meanwhile is the host's, and the report says so."""

    def __init__(self) -> None:
        self._start = (_stolen_seconds(), time.monotonic())

    def share(self) -> float:
        """Stolen CPU time over the cores' time since the meter was made (0.0 to 1.0)."""
        stolen, started = self._start
        elapsed = (time.monotonic() - started) * (os.cpu_count() or 1)
        return (_stolen_seconds() - stolen) / elapsed if elapsed > 0 else 0.0


class ForeignCpu:
    """The CPU the machine spent between two readings outside the processes a benchmark measures,
    this process and its children (the load generators), in cores: the work of everything else on
    the host. Seen here: RabbitMQ's epmd check, which boots a whole Erlang VM every minute or two
    (`erl -sname epmd-starter-...`, ~0.2 s of CPU within ~0.3 s), and kernel threads. On 2 cores
    already three-quarters busy, such a burst is a stall every request waiting then sees."""

    def __init__(self) -> None:
        self._start = (_busy_seconds(), _own_cpu_seconds(), time.monotonic())

    def cores(self, measured_seconds: float) -> float:
        """Cores used by other work since the reading was made, given what the measured processes
        used meanwhile (`CpuMeter.seconds`, summed)."""
        busy, own, started = self._start
        other = (_busy_seconds() - busy) - (_own_cpu_seconds() - own) - measured_seconds
        elapsed = time.monotonic() - started
        return max(other, 0.0) / elapsed if elapsed > 0 else 0.0


def _busy_seconds() -> float:
    # What the guest itself ran: user, nice, system, irq, softirq.
    return _machine_ticks(1, 2, 3, 6, 7) / _TICKS


def _own_cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stolen_seconds() -> float:
    return _machine_ticks(8) / _TICKS


def _machine_ticks(*indexes: int) -> int:
    """The sum of fields of the machine's `cpu` line in /proc/stat, read once, in clock ticks (a
    missing field counts 0): cpu user nice system idle iowait irq softirq steal ..."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0
    return sum(int(fields[index]) for index in indexes if index < len(fields))


def cpu_figures(cpu: dict[str, float]) -> str:
    """The processes that did work, busiest first, and their total."""
    busy = sorted(((ms, name) for name, ms in cpu.items() if ms >= 0.05), reverse=True)
    figures = ", ".join(f"{name} {ms:.2f}" for ms, name in busy)
    return f"{figures} ms; total {sum(cpu.values()):.1f} ms"


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _processes_named(command: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(command):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


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
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "commit": commit,
        "host_speed_ms": host_speed_ms(),
    }


def host_speed_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop, timed now. Shared VMs change speed from one
    minute to the next (seen here: 140 to 270 ms on one host within the hour), so every report
    carries this figure: two runs compare only after dividing by it, and ratios to a floor
    measured in the same run are what to hold a figure to."""
    started = time.process_time()
    total = 0
    for n in range(2_000_000):
        total += n * n % 7
    return round((time.process_time() - started) * 1000, 1)


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
