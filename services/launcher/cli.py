"""`reelbatch` command line: one entry point per process, plus the local launchers.

reelbatch migrate                    apply every service's migrations
reelbatch serve billing|batch|webhook|gateway
reelbatch worker                     one batch execution worker
reelbatch seed-demo                  the demo tenant (API key `demo-key`, 5,000 credits)
reelbatch run [--workers N] [--replicas N]
                                     the whole system, seeded, with its URLs printed:
                                     REELBATCH_MODE=embedded (default): one process on an
                                     embedded PostgreSQL 18 and the Postgres bus, nothing to
                                     install; REELBATCH_MODE=distributed: one process per
                                     service on PostgreSQL and RabbitMQ (N of each with
                                     --replicas N, on distinct ports, clients balancing)
reelbatch demo                       replay the seed live demo against a running system
                                     (REELBATCH_DEMO_URL, default http://127.0.0.1:8000)
reelbatch console-invite TENANT_ID EMAIL [--role owner|developer|finance] [--url URL]
                                     print a single-use link to the tenant's console
                                     (REELBATCH_PUBLIC_BASE_URL by default)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from pydantic import ValidationError

from libs.config import Settings, load_settings
from libs.lifecycle import run_process, spare_the_garbage_collector
from libs.telemetry import configure_logging, configure_telemetry, shutdown_telemetry, start_metrics_endpoint
from services.gateway.schemas.console_invites import CONSOLE_ROLES
from services.launcher.console_invite import invite_to_console
from services.launcher.demo import DEMO_URL, run_demo, seed_demo
from services.launcher.migrate import migrate
from services.launcher.registry import PROCESSES, SERVICES, WORKER, ProcessKind

log = logging.getLogger("reelbatch")


def run_one(kind: ProcessKind, settings: Settings) -> None:
    """Runs one process of `kind` until SIGTERM/SIGINT, with its logs, traces and metrics."""
    configure_telemetry(kind.name, settings.log_level)
    if kind.own_metrics_port:
        start_metrics_endpoint(settings.metrics_port_for(kind.name), settings.metrics_host)
    process_main = kind.load()
    spare_the_garbage_collector()
    try:
        run_process(lambda stopping: process_main(settings, stopping))
    finally:
        shutdown_telemetry()


def run_system(settings: Settings, workers: int, replicas: int = 1) -> int:
    """`reelbatch run`: the whole system in the configured mode."""
    if settings.mode == "embedded":
        if replicas != 1:
            raise SystemExit("--replicas needs REELBATCH_MODE=distributed (embedded mode is one process)")
        from services.launcher.embedded import run_embedded

        # One process, one service name; the gateway's /metrics covers every service in it.
        configure_telemetry("reelbatch", settings.log_level)
        try:
            return run_embedded(settings, workers)
        finally:
            shutdown_telemetry()
    from services.launcher.distributed import run_distributed

    configure_logging("reelbatch", settings.log_level)
    return run_distributed(settings, workers, replicas)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs one command."""
    parser = argparse.ArgumentParser(prog="reelbatch", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=list(SERVICES))
    commands.add_parser("worker", help="run one batch execution worker")
    commands.add_parser("seed-demo", help="create the demo tenant (idempotent)")
    demo = commands.add_parser("demo", help="replay the seed live demo against a running system")
    demo.add_argument("--url", default=os.environ.get("REELBATCH_DEMO_URL", DEMO_URL))
    invite = commands.add_parser("console-invite", help="invite someone to a tenant's customer console")
    invite.add_argument("tenant_id")
    invite.add_argument("email")
    invite.add_argument("--role", choices=CONSOLE_ROLES, default="owner")
    invite.add_argument("--url", default="", help="the gateway (default: the public base URL)")
    run = commands.add_parser("run", help="run the whole system locally")
    run.add_argument("--workers", type=int, default=int(os.environ.get("REELBATCH_WORKERS", "2")))
    run.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("REELBATCH_REPLICAS", "1")),
        help="processes of every service (distributed mode), each on its own ports",
    )
    args = parser.parse_args(argv)

    if args.command == "run":
        # Its processes (and the storage default, ADR-140) learn the replica count from here.
        os.environ["REELBATCH_REPLICAS"] = str(args.replicas)
    try:
        settings = load_settings()
    except ValidationError as invalid:
        # One line per problem, without pydantic's URL: the operator fixes the environment.
        problems = "\n".join(f"  {error['msg'].removeprefix('Value error, ')}" for error in invalid.errors())
        raise SystemExit(f"reelbatch: the configuration is refused:\n{problems}") from None
    if args.command == "migrate":
        configure_logging("migrate", settings.log_level)
        migrate(settings)
    elif args.command == "serve":
        run_one(PROCESSES[args.service], settings)
    elif args.command == "worker":
        run_one(WORKER, settings)
    elif args.command == "seed-demo":
        print(asyncio.run(seed_demo(settings)))
    elif args.command == "demo":
        return run_demo(args.url)
    elif args.command == "console-invite":
        url = args.url or settings.public_base_url
        return invite_to_console(settings, url, args.tenant_id, args.email, args.role)
    elif args.command == "run":
        return run_system(settings, args.workers, args.replicas)
    return 0
