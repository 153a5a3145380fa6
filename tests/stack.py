"""Runs the whole system as separate OS processes for end-to-end and chaos tests.

Also what both test stacks share (`tests.embedded_stack` runs the system as one process): the
test secrets, free ports, the settings that make every wait short, and how a stack starts, stops
and reads the log of its processes. Both implement `tests.stack_protocol.RunningStack`.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.isolation import create_migrated_database, create_vhost, delete_vhost, drop_database

ADMIN_TOKEN = "e2e-admin-token-0123456789"
# The Stripe webhook signing secret of the test stacks (tests sign Checkout events with it).
STRIPE_WEBHOOK_SECRET = "whsec_e2e_0123456789"


# Where the stack's gRPC servers (billing, batch, webhook) listen.
GRPC_ADDRESS_VARIABLES = (
    "REELBATCH_BILLING_GRPC_ADDR",
    "REELBATCH_BATCH_GRPC_ADDR",
    "REELBATCH_WEBHOOK_GRPC_ADDR",
)


# Below Linux's ephemeral range (32768-60999): a port the kernel gave us for free could be taken,
# before our server binds it, as the local port of any outgoing connection (a readiness probe, a
# pool's connection to PostgreSQL), and the server would fail with "address already in use".
_SERVER_PORTS = range(20_000, 32_768)


# Ports this process has handed out: a stack asks for several before any server binds one, and a
# random pick may repeat (one stack's two servers on one port was bench-quick's AddressUnavailable).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port no process listens on and not handed out before, outside the ephemeral range."""
    if len(_HANDED_OUT) > len(_SERVER_PORTS) // 2:
        _HANDED_OUT.clear()  # a very long session: the earliest stacks are long gone
    while True:
        port = random.choice(_SERVER_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def fast_settings(workdir: Path, http_port: int) -> dict[str, str]:
    """The settings both stacks run the system with: free ports, the test secrets, short waits."""
    return {
        "REELBATCH_ENV": "test",
        "REELBATCH_HTTP_PORT": str(http_port),
        "REELBATCH_BILLING_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "REELBATCH_BATCH_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "REELBATCH_WEBHOOK_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "REELBATCH_ADMIN_TOKEN": ADMIN_TOKEN,
        "REELBATCH_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "REELBATCH_ASSET_DIR": str(workdir / "assets"),
        "REELBATCH_PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",
        # Fast but real: every code path runs, only the waits are short.
        "REELBATCH_SIMULATED_LATENCY_SECONDS": "0.02",
        "REELBATCH_PROVIDER_TIMEOUT_SECONDS": "0.3",
        "REELBATCH_RETRY_BASE_SECONDS": "0.02",
        "REELBATCH_RETRY_MAX_SECONDS": "0.1",
        "REELBATCH_TASK_LEASE_SECONDS": "3",
        "REELBATCH_RECOVERY_INTERVAL_SECONDS": "0.5",
        "REELBATCH_RESERVING_GRACE_SECONDS": "1",
        "REELBATCH_LOG_LEVEL": "WARNING",
        "REELBATCH_WEBHOOK_ALLOW_HTTP": "1",
        "REELBATCH_WEBHOOK_ALLOW_PRIVATE": "1",
        # Input images are served by a local file server in the tests (plain http on loopback).
        "REELBATCH_INPUT_URL_ALLOW_HTTP": "1",
        "REELBATCH_INPUT_URL_ALLOW_PRIVATE": "1",
    }


def spawn(
    workdir: Path, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Starts `python -m services.launcher ARGS`, appending its output to `workdir/NAME.log`."""
    log = (workdir / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.launcher", *args], env=env, cwd=cwd, stdout=log, stderr=log
    )


def raise_if_one_exited(processes: dict[str, subprocess.Popen[bytes]], log: Callable[[str], str]) -> None:
    """Raises with its log if a process of the stack exited (waiting for readiness is then pointless)."""
    for name, process in processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log(name)}")


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no cleanup at all, as in a crash."""
    process.kill()
    process.wait(10)


def stop_process(process: subprocess.Popen[bytes], signum: signal.Signals, timeout: float) -> int:
    """Sends `signum` and waits `timeout` for the process to exit, then SIGKILLs it."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return int(process.returncode)


def log_tail(workdir: Path, name: str) -> str:
    """The last 4,000 characters of `workdir/NAME.log`, under a header naming the process."""
    path = workdir / f"{name}.log"
    return f"--- {name} ---\n" + (path.read_text(errors="replace")[-4000:] if path.exists() else "")


def _accepts(address: str) -> bool:
    """Whether a TCP connection to `host:port` is accepted (the server listens)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return False
    return True


@dataclass
class Stack:
    """Every service and N workers, each its own process, on free localhost ports."""

    database_url: str
    amqp_url: str
    workdir: Path
    workers: int = 2
    overrides: dict[str, str] = field(default_factory=dict)
    # The database already has every schema at head (tests.isolation.create_migrated_database):
    # `start_all` then skips `reelbatch migrate`, several seconds of CPU per stack.
    migrated: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.http_port = free_port()
        self.env = {
            **os.environ,
            **fast_settings(self.workdir, self.http_port),
            "REELBATCH_DATABASE_URL": self.database_url,
            "REELBATCH_AMQP_URL": self.amqp_url,
            **self.overrides,
        }
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    def run_cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "services.launcher", *args], env=self.env, check=True)

    def start(self, name: str) -> None:
        """Starts (or restarts) one process: billing, batch, gateway or worker-N."""
        args = ["worker"] if name.startswith("worker") else ["serve", name]
        self.processes[name] = spawn(self.workdir, name, args, self.env)

    def start_all(self, ready_timeout: float = 60.0) -> None:
        """Starts every process and waits up to `ready_timeout` seconds for the stack to be ready."""
        if not self.migrated:
            self.run_cli("migrate")
        for name in ("billing", "batch", "webhook", "gateway"):
            self.start(name)
        for index in range(self.workers):
            self.start(f"worker-{index}")
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        # /readyz is asked only once every gRPC server of the stack listens: a probe refused
        # earlier puts the gateway's channel into reconnect backoff (1 s, 1.6 s, 2.6 s, ...), which
        # delays readiness by seconds after the servers are up (the gateway starts faster).
        unheard = [self.env[variable] for variable in GRPC_ADDRESS_VARIABLES]
        while time.monotonic() < deadline:
            raise_if_one_exited(self.processes, self.log)
            unheard = [address for address in unheard if not _accepts(address)]
            if unheard:
                time.sleep(0.05)
                continue
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("stack not ready in time:\n" + "\n".join(self.log(n) for n in self.processes))

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        kill_process(self.processes[name])

    def stop(self, name: str, timeout: float = 15.0) -> int:
        """SIGTERM, as a supervisor stops a service; SIGKILL if it does not stop in time."""
        return stop_process(self.processes[name], signal.SIGTERM, timeout)

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.processes)}

    def log(self, name: str) -> str:
        return log_tail(self.workdir, name)


@contextmanager
def fresh_stack(
    workdir: Path,
    overrides: dict[str, str] | None = None,
    *,
    workers: int = 1,
    before_start: Callable[[Stack], None] | None = None,
) -> Iterator[Stack]:
    """The system as processes on a new migrated database and vhost, both dropped afterwards;
    `before_start` sees the stack (its ports chosen) before any process starts."""
    db_name, database_url = create_migrated_database()
    vhost, amqp_url = create_vhost()
    running = Stack(
        database_url, amqp_url, workdir, workers=workers, overrides=overrides or {}, migrated=True
    )
    try:
        if before_start is not None:
            before_start(running)
        running.start_all()
        yield running
    finally:
        running.stop_all()
        drop_database(db_name)
        delete_vhost(vhost)


def start_second_gateway(stack: Stack) -> str:
    """A second gateway process on the stack's settings and its own port; its base URL once ready."""
    port = free_port()
    env = {
        **stack.env,
        "REELBATCH_HTTP_PORT": str(port),
        "REELBATCH_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    stack.processes["gateway-2"] = spawn(stack.workdir, "gateway-2", ["serve", "gateway"], env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the second gateway did not get ready:\n" + stack.log("gateway-2"))
