"""`reelbatch run` in distributed mode: every service and each worker as a child process of its
own (`reelbatch serve NAME`, `reelbatch worker`), on the configured PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

from libs.config import Settings
from services.launcher.demo import print_banner, seed_demo
from services.launcher.migrate import migrate
from services.launcher.registry import SERVICES

# Children get this long to stop after SIGTERM before they are killed.
CHILDREN_STOP_SECONDS = 10
READY_TIMEOUT_SECONDS = 60


def run_distributed(settings: Settings, workers: int) -> int:
    """Starts every service as its own process against the configured PostgreSQL and RabbitMQ."""
    migrate(settings)
    commands = [[sys.executable, "-m", "services.launcher", "serve", name] for name in SERVICES]
    commands += [[sys.executable, "-m", "services.launcher", "worker"] for _ in range(workers)]
    children = [subprocess.Popen(command) for command in commands]  # noqa: S603
    stop = {"requested": False}

    def _forward(signum: int, _frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    try:
        _wait_until_ready(settings, children)
        tenant_id = asyncio.run(seed_demo(settings))
        print_banner(settings, tenant_id, f"distributed, {workers} worker process(es)")
        while not stop["requested"] and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILDREN_STOP_SECONDS
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [child.args for child in children if child.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stop["requested"] else 0


def _wait_until_ready(settings: Settings, children: list[subprocess.Popen[bytes]]) -> None:
    import httpx

    url = f"http://{settings.http_host}:{settings.http_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("a service exited during start-up; see its log above")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"services not ready after {READY_TIMEOUT_SECONDS} s ({url})")
