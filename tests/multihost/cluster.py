"""Reelbatch spread over several hosts (network namespaces): each replica on a host of its own.

`Cluster` builds a `VirtualNetwork`, starts the forwarders that let its hosts reach this machine's
PostgreSQL and RabbitMQ (both listen on loopback only and stay as they are), and runs every
process inside its host with the replicated configuration an operator would write: each backend
listens on its own address at the default port, and every client's target lists all replicas of
each service (`REELBATCH_*_GRPC_LISTEN` / `_TARGET`, ADR-098). Each worker's simulated provider
logs its calls to a file of its own (`provider_calls.py` reads them).

`close()` stops every process (SIGTERM, then SIGKILL), kills anything left in the namespaces,
stops the forwarders and deletes the namespaces, veths and bridge; it is safe to call after any
failure, including one half-way through `start()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.multihost.network import Host, VirtualNetwork, free_subnet, remove_leftovers
from tests.stack import fast_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES = "127.0.0.1:5432"
RABBITMQ = "127.0.0.1:5672"
HTTP_PORT = 8000
# service: (default gRPC port, default metrics port, the gRPC service its calls are counted under)
BACKENDS = {
    "billing": (50051, 9101, "reelbatch.proto.billing.v1.BillingService"),
    "batch": (50052, 9102, "reelbatch.proto.batch.v1.BatchService"),
    "webhook": (50053, 9103, "reelbatch.proto.webhook.v1.WebhookService"),
}
WORKER_METRICS_PORT = 9104
STOP_SECONDS = 15.0


@dataclass(frozen=True)
class Layout:
    """How many hosts run each kind of process (one process per host)."""

    gateways: int = 2
    workers: int = 3
    replicas: dict[str, int] = field(default_factory=lambda: {"billing": 2, "batch": 2, "webhook": 2})


@dataclass
class Process:
    """One process of the system, on its host."""

    name: str
    host: Host
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None


class Cluster:
    """Every process of Reelbatch on hosts of its own, on a migrated database and a vhost."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        amqp_url: str,
        layout: Layout | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.layout = layout or Layout()
        self.network = VirtualNetwork(free_subnet())
        self.processes: dict[str, Process] = {}
        self.forwarders: list[subprocess.Popen[bytes]] = []
        self._database_url = database_url
        self._amqp_url = amqp_url
        self._overrides = overrides or {}
        # How long the processes took to serve, once started (for the test's figures).
        self.start_seconds = 0.0

    # -- addresses -------------------------------------------------------------------------

    def hosts_of(self, kind: str) -> list[Host]:
        """The hosts running `kind` (billing, batch, webhook, gateway, worker), in order."""
        return [process.host for name, process in self.processes.items() if name.rsplit("-", 1)[0] == kind]

    @property
    def database_url(self) -> str:
        """The database every host uses, as reached from this (the root) namespace."""
        return self._database_url

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://{host.address}:{HTTP_PORT}" for host in self.hosts_of("gateway")]

    def call_log(self, host: Host) -> Path:
        """Where the simulated provider of the worker on `host` logs its calls."""
        return self.workdir / f"provider-calls-{host.name}.jsonl"

    def _through_forwarder(self, url: str, local: str) -> str:
        # The same URL with the machine's loopback address replaced by the bridge's.
        host = local.split(":")[0]
        return url.replace(f"@{host}:", f"@{self.network.router_address}:")

    # -- life --------------------------------------------------------------------------------

    def start(self, ready_timeout: float = 240.0) -> None:
        """Builds the network and the forwarders, starts every process, waits until all serve."""
        remove_leftovers()
        self.network.create()
        router = self.network.router_address
        self.forwarders.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.multihost.forwarder", f"{router}:5432={POSTGRES}"],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
            )
        )
        self.forwarders.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.multihost.forwarder", f"{router}:5672={RABBITMQ}"],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
            )
        )
        for forwarder in self.forwarders:
            assert forwarder.stdout is not None
            if forwarder.stdout.readline().strip() != b"ready":
                raise RuntimeError("a forwarder did not start")
        plan: list[tuple[str, list[str]]] = []
        for service, count in self.layout.replicas.items():
            plan += [(f"{service}-{i + 1}", ["serve", service]) for i in range(count)]
        plan += [(f"gateway-{i + 1}", ["serve", "gateway"]) for i in range(self.layout.gateways)]
        plan += [(f"worker-{i + 1}", ["worker"]) for i in range(self.layout.workers)]
        for name, args in plan:
            self.processes[name] = Process(name, self.network.add_host(name), args)
        # Gateways last, once every backend listens: a gateway refused at first puts its channels
        # into reconnect backoff (1 s, 1.6 s, 2.6 s, ... up to 2 minutes) and would be ready late.
        began = time.monotonic()
        deadline = began + ready_timeout
        others = [name for name in self.processes if not name.startswith("gateway-")]
        for name in others:
            self.start_process(name)
        self.wait_ready(others, deadline)
        gateways = [name for name in self.processes if name.startswith("gateway-")]
        for name in gateways:
            self.start_process(name)
        self.wait_ready(gateways, deadline)
        self.start_seconds = time.monotonic() - began

    def environment(self, process: Process) -> dict[str, str]:
        """The settings of `process`: shared ones, its own addresses, every replica as a target."""
        host = process.host
        kind = process.name.rsplit("-", 1)[0]
        env = {
            **os.environ,
            **fast_settings(self.workdir, HTTP_PORT),
            "REELBATCH_DATABASE_URL": self._through_forwarder(self._database_url, POSTGRES),
            "REELBATCH_AMQP_URL": self._through_forwarder(self._amqp_url, RABBITMQ),
            "REELBATCH_METRICS_HOST": host.address,
            "REELBATCH_HTTP_HOST": host.address,
            # A replicated deployment (ADR-140) whose hosts share this machine's disk.
            "REELBATCH_REPLICAS": "2",
            "REELBATCH_ASSET_DIR_SHARED": "true",
            "REELBATCH_STORAGE": "local",
            "REELBATCH_PUBLIC_BASE_URL": (self.gateway_urls or [f"http://{host.address}:{HTTP_PORT}"])[0],
            **self._overrides,
        }
        for service, (port, _, _) in BACKENDS.items():
            prefix = f"REELBATCH_{service.upper()}_GRPC"
            del env[f"{prefix}_ADDR"]
            env[f"{prefix}_TARGET"] = ",".join(f"{peer.address}:{port}" for peer in self.hosts_of(service))
            if kind == service:
                env[f"{prefix}_LISTEN"] = f"{host.address}:{port}"
        if kind == "worker":
            env["REELBATCH_SIMULATED_CALL_LOG"] = str(self.call_log(host))
        return env

    def start_process(self, name: str) -> None:
        """Starts (or starts again) one process inside its host, logging to `workdir/NAME.log`."""
        process = self.processes[name]
        log = (self.workdir / f"{name}.log").open("ab")
        argv = [sys.executable, "-m", "services.launcher", *process.argv]
        process.popen = subprocess.Popen(
            process.host.command(argv),
            env=self.environment(process),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=log,
        )

    def wait_ready(self, names: list[str], deadline: float) -> None:
        """Until each named backend's gRPC server and worker's metrics endpoint accept connections
        on its host's address and each named gateway answers /readyz."""
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                process = self.processes[name]
                if process.popen is not None and process.popen.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.popen.returncode}:\n{self.log(name)}")
                if self._serves(name):
                    waiting.remove(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready in time: {waiting}\n" + "\n".join(map(self.log, waiting)))
            time.sleep(0.2)

    def _serves(self, name: str) -> bool:
        process = self.processes[name]
        kind = name.rsplit("-", 1)[0]
        address = process.host.address
        if kind == "gateway":
            try:
                return httpx.get(f"http://{address}:{HTTP_PORT}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        port = BACKENDS[kind][0] if kind in BACKENDS else WORKER_METRICS_PORT
        try:
            socket.create_connection((address, port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def kill(self, name: str) -> None:
        """SIGKILL, as a crashed host would stop it."""
        popen = self.processes[name].popen
        assert popen is not None
        popen.kill()
        popen.wait(10)

    def calls_served(self, service: str) -> dict[str, float]:
        """Calls of `service`'s own RPCs served so far by each of its live replicas (their
        Prometheus endpoints; a killed replica is left out)."""
        _, metrics_port, grpc_service = BACKENDS[service]
        served: dict[str, float] = {}
        for host in self.hosts_of(service):
            popen = self.processes[host.name].popen
            if popen is None or popen.poll() is not None:
                continue
            text = httpx.get(f"http://{host.address}:{metrics_port}/metrics", timeout=5).text
            served[host.name] = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "rpc_server_duration_seconds_count"
                and sample.labels.get("rpc_service") == grpc_service
            )
        return served

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each live process and forwarder."""
        popens = {name: process.popen for name, process in self.processes.items()}
        popens.update({f"forwarder-{i + 1}": forwarder for i, forwarder in enumerate(self.forwarders)})
        used: dict[str, float] = {}
        for name, popen in popens.items():
            if popen is None or popen.poll() is not None:
                continue
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{popen.pid}/stat").read_text().rpartition(")")[2].split()
                used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return f"--- {name} ---\n" + (path.read_text(errors="replace")[-3000:] if path.exists() else "")

    def close(self) -> None:
        """Stops everything and removes the network; never raises, safe after any failure."""
        for host in self.network.hosts.values():
            # A host left cut off could not reach anything while it stops.
            with contextlib.suppress(subprocess.CalledProcessError):
                self.network.reconnect(host)
        running = [p.popen for p in self.processes.values() if p.popen is not None and p.popen.poll() is None]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for popen in running:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)
        for host in self.network.hosts.values():
            for pid in host.pids():
                # Anything still in one of our namespaces was started by this harness.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for forwarder in self.forwarders:
            forwarder.terminate()
            try:
                forwarder.wait(5)
            except subprocess.TimeoutExpired:
                forwarder.kill()
        self.network.close()
