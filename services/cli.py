"""`reelbatch` command line: one entry point per process, plus the local launcher.

    reelbatch migrate                    apply every service's migrations
    reelbatch serve billing|batch|gateway
    reelbatch worker                     one batch execution worker
    reelbatch seed-demo                  the demo tenant (API key `demo-key`, 5,000 credits)
    reelbatch run [--workers N]          migrate, start every process, seed the demo, print URLs

This module is the composition root: it is the only place that knows every service, and it
imports each one lazily so a process loads only the service it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from libs.config import Settings, load_settings
from libs.lifecycle import run_process
from libs.telemetry import configure_logging

SERVICES = ("billing", "batch", "gateway")
MIGRATED_SERVICES = ("billing", "batch")
DEMO_API_KEY = "demo-key"
DEMO_CREDITS = 5_000


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

    async with open_channel(settings.billing_grpc_addr) as channel:
        billing = billing_pb2_grpc.BillingServiceStub(channel)
        deadline = settings.grpc_deadline_seconds
        try:
            found = await billing.AuthenticateApiKey(
                billing_pb2.AuthenticateApiKeyRequest(api_key=DEMO_API_KEY), timeout=deadline
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
        base = f"http://{settings.http_host}:{settings.http_port}"
        print(
            f"\nReelbatch is running ({workers} worker(s)).\n"
            f"  REST API      {base}/api/enterprise/video-batch\n"
            f"  OpenAPI docs  {base}/docs  ({base}/openapi.json)\n"
            f"  Health        {base}/readyz\n"
            f"  Demo tenant   {tenant_id}  API key: {DEMO_API_KEY}  ({DEMO_CREDITS} credits)\n\n"
            f"Try:\n  curl -s -X POST {base}/api/enterprise/video-batch -H 'X-API-Key: {DEMO_API_KEY}' \\\n"
            "    -H 'Content-Type: application/json' \\\n"
            '    -d \'{"items":[{"prompt":"A cat playing piano","model":"sora-2"},'
            '{"prompt":"A dog in space #fail","model":"sora-2"}]}\'\n\n'
            "Ctrl-C stops everything.",
            flush=True,
        )
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


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs one command."""
    parser = argparse.ArgumentParser(prog="reelbatch", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    commands.add_parser("worker", help="run one batch execution worker")
    commands.add_parser("seed-demo", help="create the demo tenant (idempotent)")
    run = commands.add_parser("run", help="run the whole system locally")
    run.add_argument("--workers", type=int, default=int(os.environ.get("REELBATCH_WORKERS", "2")))
    args = parser.parse_args(argv)

    settings = load_settings()
    if args.command == "migrate":
        configure_logging("migrate", settings.log_level)
        migrate(settings)
    elif args.command == "serve":
        configure_logging(args.service, settings.log_level)
        serve_fn = _serve_function(args.service)
        run_process(lambda stopping: serve_fn(settings, stopping))
    elif args.command == "worker":
        configure_logging("worker", settings.log_level)
        worker = importlib.import_module("services.batch.entrypoints.worker")
        run_process(lambda stopping: worker.run_worker(settings, stopping))
    elif args.command == "seed-demo":
        print(asyncio.run(seed_demo(settings)))
    elif args.command == "run":
        configure_logging("launcher", settings.log_level)
        return _run_local(settings, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
