"""`reelbatch run --replicas 2` (distributed mode): a pool, not a standby (issue 27).

Two processes of billing, batch, webhook and the gateway on real PostgreSQL and RabbitMQ. Calls
through both gateways must spread over both replicas of each backend (each >= 35% before any
kill, read from each replica's own Prometheus endpoint); after one billing replica is killed
(SIGKILL), every call succeeds again within a bounded wait and the money invariants hold.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.launcher.replicas import REPLICA_PORT_STEP
from tests.invariants import wait_for_all_settled
from tests.rest_api import Api
from tests.stack import fast_settings, free_port, log_tail, spawn, stop_process

FAIR_SHARE = 0.35
CALLS_PER_GATEWAY = 40
# After a replica dies, its clients' health checks must route around it within this.
RECOVERY_SECONDS = 5.0
BACKENDS = {  # service: (gRPC service name, offset of its metrics port from billing's)
    "billing": ("reelbatch.proto.billing.v1.BillingService", 0),
    "batch": ("reelbatch.proto.batch.v1.BatchService", 1),
    "webhook": ("reelbatch.proto.webhook.v1.WebhookService", 2),
}


def _free_pair() -> int:
    """A free port whose replica twin (+ REPLICA_PORT_STEP) is free too."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + REPLICA_PORT_STEP))
            except OSError:
                continue
        return port


class ReplicatedRun:
    """The launcher's process and what the test needs to reach each replica."""

    def __init__(self, database_url: str, amqp_url: str, workdir: Path) -> None:
        self.workdir = workdir
        http_port = _free_pair()
        self.metrics_base = _free_pair()
        for offset in (1, 2, 3):  # batch, webhook and worker metrics sit next to billing's
            while not _port_free(self.metrics_base + offset) or not _port_free(
                self.metrics_base + offset + REPLICA_PORT_STEP
            ):
                self.metrics_base = _free_pair()
        self.env = {
            **os.environ,
            **fast_settings(workdir, http_port),
            "REELBATCH_MODE": "distributed",
            "REELBATCH_DATABASE_URL": database_url,
            "REELBATCH_AMQP_URL": amqp_url,
            "REELBATCH_METRICS_PORT": str(self.metrics_base),
            "REELBATCH_BILLING_GRPC_ADDR": f"127.0.0.1:{_free_pair()}",
            "REELBATCH_BATCH_GRPC_ADDR": f"127.0.0.1:{_free_pair()}",
            "REELBATCH_WEBHOOK_GRPC_ADDR": f"127.0.0.1:{_free_pair()}",
            # Every replica runs on this host and sees one asset directory (the default with
            # replicas, S3, is tested in tests/integration/storage/test_shared_storage.py).
            "REELBATCH_STORAGE": "local",
            "REELBATCH_ASSET_DIR_SHARED": "true",
        }
        self.gateways = [f"http://127.0.0.1:{http_port + i}" for i in range(2)]
        self.launcher = spawn(workdir, "launcher", ["run", "--replicas", "2", "--workers", "1"], self.env)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.launcher.poll() is not None:
                raise AssertionError("launcher exited:\n" + log_tail(self.workdir, "launcher"))
            if "Gateways" in (self.workdir / "launcher.log").read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise AssertionError("replicated run not ready:\n" + log_tail(self.workdir, "launcher"))

    def served(self, service: str) -> list[float]:
        """Calls of `service`'s own RPCs served so far by each of its two replicas."""
        name, offset = BACKENDS[service]
        counts = []
        for replica in range(2):
            port = self.metrics_base + offset + replica * REPLICA_PORT_STEP
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            counts.append(
                sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "rpc_server_duration_seconds_count"
                    and sample.labels.get("rpc_service") == name
                )
            )
        return counts

    def replica_pid(self, service: str, replica: int) -> int:
        """The pid of a replica, found among the launcher's children by its listen setting."""
        listen = f"REELBATCH_{service.upper()}_GRPC_LISTEN="
        port = int(self.env[f"REELBATCH_{service.upper()}_GRPC_ADDR"].rpartition(":")[2])
        wanted = f"{listen}127.0.0.1:{port + replica * REPLICA_PORT_STEP}".encode()
        children = Path(f"/proc/{self.launcher.pid}/task/{self.launcher.pid}/children").read_text().split()
        for pid in map(int, children):
            if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return pid
        raise AssertionError(f"no {service} replica {replica} among {children}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def run(database_url: str, amqp_url: str, tmp_path: Path) -> Iterator[ReplicatedRun]:
    replicated = ReplicatedRun(database_url, amqp_url, tmp_path)
    try:
        replicated.wait_ready()
        yield replicated
    finally:
        stop_process(replicated.launcher, signal.SIGTERM, 30)


def _shares(before: list[float], after: list[float]) -> list[float]:
    served = [b - a for a, b in zip(before, after, strict=True)]
    return [count / sum(served) for count in served] if sum(served) else [0.0, 0.0]


def test_two_replicas_of_every_service_share_the_calls_and_survive_a_kill(
    run: ReplicatedRun, database_url: str
) -> None:
    apis = [Api(url) for url in run.gateways]
    customer = apis[0].new_customer(credits=1_000)
    before = {service: run.served(service) for service in BACKENDS}
    for _ in range(CALLS_PER_GATEWAY):
        for api in apis:
            api.credits(customer)
            listed = api.http.get("/api/enterprise/webhook-endpoints", headers=customer.headers)
            assert listed.status_code == 200, listed.text
    batch_ids = []
    for api in apis:
        created = api.create_batch(customer, [{"prompt": "A cat playing piano", "model": "sora-2"}] * 3)
        assert created.status_code in (200, 201, 202), created.text
        batch_ids.append(created.json()["batch_id"])
    for _ in range(CALLS_PER_GATEWAY // 2):
        for api, batch_id in zip(apis, batch_ids, strict=True):
            api.batch(customer, batch_id)
    shares = {service: _shares(before[service], run.served(service)) for service in BACKENDS}
    print(f"share of calls per replica: {shares}")
    for service, split in shares.items():
        assert min(split) >= FAIR_SHARE, f"{service}: {split}"

    os.kill(run.replica_pid("billing", 0), signal.SIGKILL)
    killed_at = time.monotonic()
    failures = 0
    while True:
        statuses = [
            api.http.get("/api/enterprise/credits", headers=customer.headers).status_code for api in apis
        ]
        if statuses == [200, 200]:
            break
        failures += 1
        assert time.monotonic() - killed_at < RECOVERY_SECONDS, f"still failing: {statuses}"
    print(
        f"billing replica killed: {failures} failed rounds, recovered in {time.monotonic() - killed_at:.2f} s"
    )
    for _ in range(CALLS_PER_GATEWAY):
        for api in apis:
            assert api.http.get("/api/enterprise/credits", headers=customer.headers).status_code == 200
    for api, batch_id in zip(apis, batch_ids, strict=True):
        assert api.wait_until_settled(customer, batch_id)["settlement_status"] != "pending"
    assert run.launcher.poll() is None, "the run stopped although a billing replica is left"
    wait_for_all_settled(database_url)
