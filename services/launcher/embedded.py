"""`reelbatch run` in embedded mode: every service and the workers as tasks of this one process,
on an embedded PostgreSQL and the Postgres bus; nothing to install."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from pathlib import Path
from typing import Any

from libs.config import Settings
from libs.lifecycle import run_process
from services.launcher.demo import print_banner, seed_demo
from services.launcher.migrate import migrate
from services.launcher.registry import SERVICES, WORKER

log = logging.getLogger("reelbatch")

# Ctrl-C must stop everything within 5 s: the services get this long to drain, then PostgreSQL
# this long for its shutdown checkpoint before an immediate stop (WAL replay at the next start).
EMBEDDED_SHUTDOWN_SECONDS = 2.5
EMBEDDED_WORKER_DRAIN_SECONDS = 1.5
EMBEDDED_POSTGRES_STOP_SECONDS = 2


async def _first_of(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


async def serve_embedded(settings: Settings, stopping: asyncio.Event, workers: int) -> bool:
    """Runs every service and `workers` workers as tasks of this loop until `stopping` is set.

    Returns False if a component failed (at start-up or later) rather than being asked to stop.
    """
    # Called with the embedded drain time, which the registry's common signature does not carry.
    run_worker = getattr(importlib.import_module(WORKER.module), WORKER.function)
    mains = {name: kind.load() for name, kind in SERVICES.items()}

    async def run(name: str, ready: asyncio.Event) -> None:
        if name.startswith("worker-"):
            await run_worker(settings, stopping, ready, grace_seconds=EMBEDDED_WORKER_DRAIN_SECONDS)
        else:
            await mains[name](settings, stopping, ready)

    # The gateway starts last: its readiness probes would otherwise reach the gRPC servers before
    # they listen, and a refused connection puts the process-wide subchannel into backoff.
    phases = [
        [*(name for name in SERVICES if name != "gateway"), *(f"worker-{i}" for i in range(workers))],
        [name for name in SERVICES if name == "gateway"],
    ]
    components: dict[str, asyncio.Task[None]] = {}
    stop_requested = asyncio.ensure_future(stopping.wait())
    healthy = True
    try:
        for phase in phases:
            readiness = {name: asyncio.Event() for name in phase}
            for name in phase:
                components[name] = asyncio.create_task(run(name, readiness[name]), name=name)
            phase_ready = asyncio.ensure_future(
                asyncio.gather(*(event.wait() for event in readiness.values()))
            )
            await _first_of(*components.values(), stop_requested, phase_ready)
            phase_ready.cancel()
            if not all(event.is_set() for event in readiness.values()):
                break
        else:
            seeding = asyncio.ensure_future(seed_demo(settings))
            await _first_of(*components.values(), stop_requested, seeding)
            if seeding.done() and seeding.exception() is None:
                print_banner(settings, seeding.result(), f"embedded, one process, {workers} worker(s)")
                await _first_of(*components.values(), stop_requested)
            elif seeding.done():
                log.error("could not seed the demo tenant", exc_info=seeding.exception())
                healthy = False
            else:
                seeding.cancel()  # asked to stop (or a component died) while seeding
        healthy = healthy and stopping.is_set()
    finally:
        stopping.set()
        for name, task in components.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s failed", name, exc_info=task.exception())
                healthy = False
            elif task.done() and not healthy:
                log.error("%s stopped unexpectedly", name)
        if components:
            _, late = await asyncio.wait(components.values(), timeout=EMBEDDED_SHUTDOWN_SECONDS)
            for task in late:
                log.warning(
                    "%s did not stop within %.1fs; cancelled", task.get_name(), EMBEDDED_SHUTDOWN_SECONDS
                )
                task.cancel()
        await asyncio.gather(*components.values(), stop_requested, return_exceptions=True)
    return healthy


def run_embedded(settings: Settings, workers: int) -> int:
    """Everything in this process, on an embedded PostgreSQL and the Postgres bus."""
    from libs.embedded_postgres import EmbeddedPostgres

    pgdata = Path(settings.data_dir) / "pgdata"
    print(f"Starting PostgreSQL (embedded) with its data in {pgdata} ...", flush=True)
    postgres = EmbeddedPostgres.start(pgdata)
    healthy = False
    try:
        embedded = settings.model_copy(
            update={"database_url": postgres.database_url("reelbatch"), "bus": "postgres"}
        )
        migrate(embedded)

        async def serve_all(stopping: asyncio.Event) -> None:
            nonlocal healthy
            healthy = await serve_embedded(embedded, stopping, workers)

        run_process(serve_all)
    finally:
        # A second Ctrl-C must not interrupt the database's own orderly shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        postgres.stop(EMBEDDED_POSTGRES_STOP_SECONDS)
        print("Reelbatch stopped (PostgreSQL included).", flush=True)
    if not healthy:
        log.error("embedded mode stopped because a component failed (see the errors above)")
    return 0 if healthy else 1
