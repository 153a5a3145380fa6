"""`reelbatch run` in distributed mode: every service and each worker as a child process of its
own (`reelbatch serve NAME`, `reelbatch worker`), on the configured PostgreSQL and RabbitMQ;
with `--replicas N`, N processes of every service (services/launcher/replicas.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from libs.config import Settings
from services.launcher.demo import print_banner, seed_demo
from services.launcher.migrate import migrate
from services.launcher.registry import SERVICES
from services.launcher.replicas import ReplicaPlan, plan_replicas, worker_metrics_port

# Children get this long to stop after SIGTERM before they are killed.
CHILDREN_STOP_SECONDS = 10
READY_TIMEOUT_SECONDS = 60


def run_distributed(settings: Settings, workers: int, replicas: int = 1) -> int:
    """Starts every service as its own process (`replicas` of each) against the configured
    PostgreSQL and RabbitMQ."""
    plan = plan_replicas(settings, replicas)
    migrate(settings)
    serve = [sys.executable, "-m", "services.launcher", "serve"]
    pools: dict[str, list[subprocess.Popen[bytes]]] = {}
    for name in SERVICES:
        # One replica keeps the configured settings as they are (a dns:/// target, say).
        pools[name] = [
            subprocess.Popen([*serve, name], env={**os.environ, **environment})  # noqa: S603
            for environment in (plan.environments[name] if replicas > 1 else [{}])
        ]
    children = [child for pool in pools.values() for child in pool]
    worker = [sys.executable, "-m", "services.launcher", "worker"]
    worker_environment = dict(os.environ)
    if replicas > 1:
        worker_environment.update(plan.environments["gateway"][0])
        del worker_environment["REELBATCH_HTTP_PORT"]
        worker_environment["REELBATCH_METRICS_PORT"] = str(worker_metrics_port(settings))
    worker_processes = [subprocess.Popen(worker, env=worker_environment) for _ in range(workers)]  # noqa: S603
    children += worker_processes
    stop = {"requested": False}

    def _forward(signum: int, _frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    try:
        _wait_until_ready(plan, children)
        tenant_id = asyncio.run(seed_demo(settings if replicas == 1 else _as_replica(settings, plan)))
        how = f"distributed, {replicas} replica(s) of every service, {workers} worker process(es)"
        print_banner(settings, tenant_id, how)
        if replicas > 1:
            print("Gateways (put a load balancer in front of them):", *plan.gateway_urls, flush=True)
        # A pool outlives a replica that dies (its clients move to the others); the run stops when
        # a service has no replica left or a worker exits.
        while (
            not stop["requested"]
            and all(any(child.poll() is None for child in pool) for pool in pools.values())
            and all(child.poll() is None for child in worker_processes)
        ):
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


def _as_replica(settings: Settings, plan: ReplicaPlan) -> Settings:
    """`settings` with the replicated run's targets (the seeding talks to billing)."""
    return settings.model_copy(
        update={
            "billing_grpc_target": plan.environments["gateway"][0]["REELBATCH_BILLING_GRPC_TARGET"],
        }
    )


def _wait_until_ready(plan: ReplicaPlan, children: list[subprocess.Popen[bytes]]) -> None:
    """Waits until every gateway answers /readyz (each checks every backend it targets)."""
    import httpx

    waiting = [f"{url}/readyz" for url in plan.gateway_urls]
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while waiting and time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("a service exited during start-up; see its log above")
        try:
            if httpx.get(waiting[0], timeout=1.0).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    if waiting:
        raise SystemExit(f"services not ready after {READY_TIMEOUT_SECONDS} s ({waiting[0]})")
