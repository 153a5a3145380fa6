"""`reelbatch` command line: one entry point per process, plus the local launcher.

    reelbatch migrate                    apply every service's migrations
    reelbatch serve billing|batch|gateway
    reelbatch worker                     one batch execution worker
    reelbatch seed-demo                  the demo tenant (API key `demo-key`, 5,000 credits)
    reelbatch run [--workers N]          the whole system, seeded, with its URLs printed:
                                         REELBATCH_MODE=embedded (default): one process on an
                                         embedded PostgreSQL 18 and the Postgres bus, nothing to
                                         install; REELBATCH_MODE=distributed: one process per
                                         service on PostgreSQL and RabbitMQ
    reelbatch demo                       replay the seed live demo against a running system
                                         (REELBATCH_DEMO_URL, default http://127.0.0.1:8000)

This module is the composition root: it is the only place that knows every service, and it
imports each one lazily so a process loads only the service it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, spare_the_garbage_collector
from libs.telemetry import configure_logging, configure_telemetry, shutdown_telemetry, start_metrics_endpoint

if TYPE_CHECKING:
    import httpx

# Two optional imports that only pay off for a human at a terminal, refused here, before any
# service is imported (a None entry in sys.modules makes `import` raise ImportError, and both
# libraries then fall back on their own): httpx's __init__ imports its command line
# (`httpx._main`: rich, pygments, click) whenever those are installed, ~0.3-0.5 s of CPU at the
# start of every process that imports httpx (gateway, batch, webhook, workers); mako, which
# alembic uses, imports pygments to colour HTML tracebacks, ~0.5 s of every `migrate`. They are
# installed here only as development dependencies, but that is where processes start most often.
for _unused in ("httpx._main", "mako.ext.pygmentplugin"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

log = logging.getLogger("reelbatch")

SERVICES = ("billing", "batch", "webhook", "gateway")
MIGRATED_SERVICES = ("billing", "batch", "webhook")
DEMO_API_KEY = "demo-key"
DEMO_CREDITS = 5_000
DEMO_URL = "http://127.0.0.1:8000"
# Ctrl-C must stop everything within 5 s: the services get this long to drain, then PostgreSQL
# this long for its shutdown checkpoint before an immediate stop (WAL replay at the next start).
EMBEDDED_SHUTDOWN_SECONDS = 2.5
EMBEDDED_WORKER_DRAIN_SECONDS = 1.5
EMBEDDED_POSTGRES_STOP_SECONDS = 2


def _start_telemetry(process: str, settings: Settings) -> None:
    """Logs, traces and metrics of one process; every process but the gateway (which serves
    `/metrics` on its HTTP port) gets a metrics port of its own."""
    configure_telemetry(process, settings.log_level)
    if process != "gateway":
        start_metrics_endpoint(settings.metrics_port_for(process), settings.metrics_host)


def _serve_function(service: str) -> Callable[..., Awaitable[None]]:
    module = importlib.import_module(f"services.{service}.entrypoints.main")
    serve: Callable[..., Awaitable[None]] = module.serve
    return serve


def migrate(settings: Settings) -> None:
    """Creates the database if needed, then applies every service's migrations."""
    from libs.migrations import ensure_database

    ensure_database(settings.database_url)
    for service in MIGRATED_SERVICES:
        importlib.import_module(f"services.{service}.bootstrap").migrate(settings.database_url)


async def seed_demo(settings: Settings) -> str:
    """Creates the demo tenant once (idempotent); returns its tenant id."""
    import grpc
    from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

    from libs.rpc.client import open_channel
    from libs.rpc.tls import tls_from_settings

    async with open_channel(settings.billing_grpc_addr, tls=tls_from_settings(settings)) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        deadline = settings.grpc_deadline_seconds
        try:
            found = await billing.AuthenticateApiKey(
                billing_pb2.AuthenticateApiKeyRequest(api_key=DEMO_API_KEY),
                timeout=deadline,
                wait_for_ready=True,
            )
            tenant_id = found.tenant_id
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            created = await billing.CreateTenant(
                billing_pb2.CreateTenantRequest(name="Demo Studio"), timeout=deadline
            )
            tenant_id = created.tenant_id
            await billing.CreateApiKey(
                billing_pb2.CreateApiKeyRequest(tenant_id=tenant_id, api_key=DEMO_API_KEY), timeout=deadline
            )
        await billing.TopUp(
            billing_pb2.TopUpRequest(
                tenant_id=tenant_id, credits=DEMO_CREDITS, reference="demo-initial-credits"
            ),
            timeout=deadline,
        )
        return str(tenant_id)


def _run_local(settings: Settings, workers: int) -> int:
    """Starts every service as its own process against the configured PostgreSQL and RabbitMQ."""
    migrate(settings)
    commands = [[sys.executable, "-m", "services.cli", "serve", name] for name in SERVICES]
    commands += [[sys.executable, "-m", "services.cli", "worker"] for _ in range(workers)]
    children = [subprocess.Popen(command) for command in commands]  # noqa: S603
    stop = {"requested": False}

    def _forward(signum: int, _frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    try:
        _wait_until_ready(settings, children)
        tenant_id = asyncio.run(seed_demo(settings))
        _print_banner(settings, tenant_id, f"distributed, {workers} worker process(es)")
        while not stop["requested"] and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("a service exited during start-up; see its log above")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"services not ready after 60 s ({url})")


def _print_banner(settings: Settings, tenant_id: str, how: str) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    print(
        f"\nReelbatch is running ({how}).\n"
        f"  REST API      {base}/api/enterprise/video-batch\n"
        f"  OpenAPI docs  {base}/docs  ({base}/openapi.json)\n"
        f"  Admin pages   {base}/admin/batches  (admin token: REELBATCH_ADMIN_TOKEN)\n"
        f"  Health        {base}/readyz\n"
        f"  Demo tenant   {tenant_id}  API key: {DEMO_API_KEY}  ({DEMO_CREDITS} credits)\n\n"
        f"Try:\n  curl -s -X POST {base}/api/enterprise/video-batch -H 'X-API-Key: {DEMO_API_KEY}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        '    -d \'{"items":[{"prompt":"A cat playing piano","model":"sora-2"},'
        '{"prompt":"A dog in space #fail","model":"sora-2"}]}\'\n'
        "or replay the whole seed demo in another terminal:  make demo\n\n"
        "Ctrl-C stops everything.",
        flush=True,
    )


def _embedded_services() -> list[str]:
    """The services to run in one process: every one whose entry point exists in this checkout."""
    names = [*SERVICES, *(["webhook"] if "webhook" not in SERVICES else [])]
    return [name for name in names if _has_entry_point(name)]


def _has_entry_point(service: str) -> bool:
    try:
        return importlib.util.find_spec(f"services.{service}.entrypoints.main") is not None
    except ModuleNotFoundError:
        return False


async def _first_of(*futures: asyncio.Future[Any]) -> None:
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


async def _serve_embedded(settings: Settings, stopping: asyncio.Event, workers: int) -> bool:
    """Runs every service and `workers` workers as tasks of this loop until `stopping` is set.

    Returns False if a component failed (at start-up or later) rather than being asked to stop.
    """
    worker_module = importlib.import_module("services.batch.entrypoints.worker")

    def start(name: str, ready: asyncio.Event) -> Awaitable[None]:
        if name.startswith("worker-"):
            return worker_module.run_worker(  # type: ignore[no-any-return]
                settings, stopping, ready, grace_seconds=EMBEDDED_WORKER_DRAIN_SECONDS
            )
        return _serve_function(name)(settings, stopping, ready)

    async def run(name: str, ready: asyncio.Event) -> None:
        await start(name, ready)

    services = _embedded_services()
    # The gateway starts last: its readiness probes would otherwise reach the gRPC servers before
    # they listen, and a refused connection puts the process-wide subchannel into backoff.
    phases = [
        [*(name for name in services if name != "gateway"), *(f"worker-{i}" for i in range(workers))],
        [name for name in services if name == "gateway"],
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
                _print_banner(settings, seeding.result(), f"embedded, one process, {workers} worker(s)")
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


def _run_embedded(settings: Settings, workers: int) -> int:
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
            healthy = await _serve_embedded(embedded, stopping, workers)

        run_process(serve_all)
    finally:
        # A second Ctrl-C must not interrupt the database's own orderly shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        postgres.stop(EMBEDDED_POSTGRES_STOP_SECONDS)
        print("Reelbatch stopped (PostgreSQL included).", flush=True)
    if not healthy:
        log.error("embedded mode stopped because a component failed (see the errors above)")
    return 0 if healthy else 1


def _demo_items() -> list[dict[str, str]]:
    prompts = [
        "A cat playing piano",
        "A dog in space",
        "A bird flying over ocean",
        "A lighthouse in a storm",
        "A chef flipping pancakes",
        "A paper boat on a river",
        "A city skyline at dawn",
        "A robot dancing in the rain #fail",
        "A fox running through snow",
        "A hot air balloon over hills",
        "A skateboarder at sunset",
        "A waterfall in the jungle",
        "A train crossing a bridge",
        "A child blowing bubbles",
        "A whale breaching at sea",
        "A desert caravan at night",
        "A lantern festival",
        "A hummingbird at a flower",
        "A surfer riding a big wave",
        "A snowman melting in spring",
    ]
    return [{"prompt": prompt, "model": "sora-2"} for prompt in prompts]


def _show(response: httpx.Response) -> None:
    print(f"   HTTP {response.status_code}")
    for line in json.dumps(response.json(), indent=2, ensure_ascii=False).splitlines():
        print(f"   {line}")


def _progress_line(batch: dict[str, Any]) -> str:
    total = int(batch["total_count"])
    done = int(batch["success_count"]) + int(batch["failed_count"]) + int(batch["cancelled_count"])
    filled = 30 * done // max(total, 1)
    return (
        f"   [{'#' * filled}{'.' * (30 - filled)}] {done:>2}/{total}  "
        f"succeeded {batch['success_count']}  failed {batch['failed_count']}  status {batch['status']}"
    )


def _ledger_lines(entries: list[dict[str, Any]]) -> list[str]:
    return [
        f"   {entry['ref_type']:<14} {entry['credits_delta']:>+6}   balance after {entry['balance_after']:>6}"
        f"   ({entry['created_at']})"
        for entry in sorted(entries, key=lambda e: (str(e["created_at"]), str(e["entry_id"])))
    ]


def run_demo(base_url: str, api_key: str = DEMO_API_KEY, *, timeout_seconds: float = 120.0) -> int:
    """Replays the seed live demo step by step against a running system; 0 if every claim held."""
    import httpx

    headers = {"X-API-Key": api_key}
    items = _demo_items()
    request_id = f"demo-{uuid.uuid4().hex[:12]}"
    problems: list[str] = []

    def expect(claim: bool, failure: str) -> None:
        if not claim:
            problems.append(failure)
            print(f"   !! {failure}")

    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        print(f"Reelbatch live demo against {base_url} (API key {api_key})\n")
        print(
            f"1. Submit 20 videos in one request (sora-2, one prompt marked #fail), X-Request-ID {request_id}"
        )
        body = {"items": items}
        created = http.post("/api/enterprise/video-batch", json=body, headers={"X-Request-ID": request_id})
        _show(created)
        if created.status_code != 202:
            print("\nThe batch was not accepted; is the demo tenant seeded and funded?")
            return 1
        batch_id = str(created.json()["batch_id"])
        expect(created.json()["required_credits"] == 200, "20 x 10 credits should require 200")
        print("   The price is known and frozen before anything runs: 20 x 10 = 200 credits.\n")

        print("2. The ledger already holds the upfront charge")
        upfront = http.get("/api/enterprise/ledger", params={"batch_id": batch_id}).json()["items"]
        for line in _ledger_lines([e for e in upfront if e["ref_type"] == "batch_upfront"]):
            print(line)
        expect(
            any(e["ref_type"] == "batch_upfront" and e["credits_delta"] == -200 for e in upfront),
            "expected a batch_upfront entry of -200",
        )
        print()

        print("3. Every item runs independently; a failure is refunded when it is known")
        deadline = time.monotonic() + timeout_seconds
        shown = ""
        interactive = sys.stdout.isatty()
        while True:
            batch = http.get(f"/api/enterprise/video-batch/{batch_id}").json()
            line = _progress_line(batch)
            if line != shown:
                print(f"\r{line}" if interactive else line, end="" if interactive else "\n", flush=True)
                shown = line
            if batch["settlement_status"] != "pending":
                break
            if time.monotonic() > deadline:
                print(f"\n   !! the batch did not settle within {timeout_seconds:.0f}s")
                return 1
            time.sleep(0.25)
        if interactive:
            print()
        print()

        print("4. The final batch")
        for key in (
            "status",
            "total_count",
            "success_count",
            "failed_count",
            "frozen_credits",
            "credits_spent",
            "refunded_credits",
            "settlement_status",
        ):
            print(f"   {key:<18} {batch[key]}")
        expect(batch["success_count"] == 19 and batch["failed_count"] == 1, "expected 19 succeeded, 1 failed")
        failed = http.get(f"/api/enterprise/video-batch/{batch_id}/tasks", params={"status": "failed"}).json()
        for task in failed["items"]:
            print(
                f"   failed task #{task['batch_index']}: {task['failure_type']} "
                f"({task['error_message']}), attempts {task['attempts']}"
            )
        print()

        print("5. The ledger of this batch, as finance sees it")
        entries = http.get("/api/enterprise/ledger", params={"batch_id": batch_id}).json()["items"]
        for line in _ledger_lines(entries):
            print(line)
        net_spent = -sum(int(entry["credits_delta"]) for entry in entries)
        refunded = sum(int(e["credits_delta"]) for e in entries if e["ref_type"] == "batch_refund")
        print(f"   Net spent: {net_spent} credits (200 frozen - {refunded} refunded = 19 videos x 10)\n")
        expect(refunded == 10, "expected a batch_refund of +10")
        expect(net_spent == 190, "expected a net spend of 190")

        print("6. Not enough credits: refused with 402 before anything runs, nothing charged")
        available = int(http.get("/api/enterprise/credits").json()["available_credits"])
        too_many = available // 10 + 1
        if too_many > 10_000:
            print(f"   (skipped: {available} credits cover the largest batch allowed)\n")
        else:
            refused = http.post(
                "/api/enterprise/video-batch",
                json={"items": [{"prompt": f"Scene {i}", "model": "sora-2"} for i in range(too_many)]},
            )
            _show(refused)
            expect(refused.status_code == 402, "expected 402 insufficient_credits")
            after = int(http.get("/api/enterprise/credits").json()["available_credits"])
            expect(after == available, "a refused batch must not change the balance")
            print(f"   Available credits still {after}.\n")

        print(f"7. The same request again (X-Request-ID {request_id}): the same batch, no second charge")
        before = int(http.get("/api/enterprise/credits").json()["available_credits"])
        retried = http.post("/api/enterprise/video-batch", json=body, headers={"X-Request-ID": request_id})
        print(f"   HTTP {retried.status_code}  batch_id {retried.json().get('batch_id')}")
        after = int(http.get("/api/enterprise/credits").json()["available_credits"])
        expect(retried.json().get("batch_id") == batch_id, "the retry should return the same batch_id")
        expect(after == before, "the retry must not charge again")
        same = retried.json().get("batch_id") == batch_id
        print(f"   Same batch_id: {same}; available credits {before} -> {after}\n")

    print("Demo complete: every claim held." if not problems else f"Demo found {len(problems)} problem(s).")
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs one command."""
    parser = argparse.ArgumentParser(prog="reelbatch", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    commands.add_parser("worker", help="run one batch execution worker")
    commands.add_parser("seed-demo", help="create the demo tenant (idempotent)")
    demo = commands.add_parser("demo", help="replay the seed live demo against a running system")
    demo.add_argument("--url", default=os.environ.get("REELBATCH_DEMO_URL", DEMO_URL))
    run = commands.add_parser("run", help="run the whole system locally")
    run.add_argument("--workers", type=int, default=int(os.environ.get("REELBATCH_WORKERS", "2")))
    args = parser.parse_args(argv)

    settings = load_settings()
    if args.command == "migrate":
        configure_logging("migrate", settings.log_level)
        migrate(settings)
    elif args.command == "serve":
        _start_telemetry(args.service, settings)
        serve_fn = _serve_function(args.service)
        spare_the_garbage_collector()
        try:
            run_process(lambda stopping: serve_fn(settings, stopping))
        finally:
            shutdown_telemetry()
    elif args.command == "worker":
        _start_telemetry("worker", settings)
        worker = importlib.import_module("services.batch.entrypoints.worker")
        spare_the_garbage_collector()
        try:
            run_process(lambda stopping: worker.run_worker(settings, stopping))
        finally:
            shutdown_telemetry()
    elif args.command == "seed-demo":
        print(asyncio.run(seed_demo(settings)))
    elif args.command == "demo":
        return run_demo(args.url)
    elif args.command == "run":
        if settings.mode == "embedded":
            # One process, one service name; the gateway's /metrics covers every service in it.
            configure_telemetry("reelbatch", settings.log_level)
            try:
                return _run_embedded(settings, args.workers)
            finally:
                shutdown_telemetry()
        configure_logging("reelbatch", settings.log_level)
        return _run_local(settings, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
