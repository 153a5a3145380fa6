"""`reelbatch run --replicas N`: distinct ports for every replica, every client targeting all."""

from __future__ import annotations

import pytest

from libs.config import Settings
from services.launcher.cli import run_system
from services.launcher.replicas import plan_replicas, worker_metrics_port


def test_two_replicas_of_every_service_listen_apart_and_are_all_targeted() -> None:
    plan = plan_replicas(Settings(billing_grpc_addr="0.0.0.0:50051", http_port=8000), 2)
    billing = [env["REELBATCH_BILLING_GRPC_LISTEN"] for env in plan.environments["billing"]]
    assert billing == ["0.0.0.0:50051", "0.0.0.0:50151"]
    batch = [env["REELBATCH_BATCH_GRPC_LISTEN"] for env in plan.environments["batch"]]
    assert batch == ["127.0.0.1:50052", "127.0.0.1:50152"]
    for name in ("billing", "batch", "webhook", "gateway"):
        for env in plan.environments[name]:
            assert env["REELBATCH_BILLING_GRPC_TARGET"] == "127.0.0.1:50051,127.0.0.1:50151"
            assert env["REELBATCH_WEBHOOK_GRPC_TARGET"] == "127.0.0.1:50053,127.0.0.1:50153"
    assert [env["REELBATCH_HTTP_PORT"] for env in plan.environments["gateway"]] == ["8000", "8001"]
    assert plan.gateway_urls == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]


def test_every_replica_gets_a_metrics_port_of_its_own() -> None:
    ports = {
        env["REELBATCH_METRICS_PORT"]
        for name in ("billing", "batch", "webhook")
        for env in plan_replicas(Settings(), 3).environments[name]
    }
    assert len(ports) == 9
    based = plan_replicas(Settings(metrics_port=20000), 2).environments
    assert [env["REELBATCH_METRICS_PORT"] for env in based["batch"]] == ["20001", "20101"]
    assert worker_metrics_port(Settings(metrics_port=20000)) == 20003
    off = plan_replicas(Settings(metrics_port=0), 2).environments
    assert {env["REELBATCH_METRICS_PORT"] for env in off["webhook"]} == {"0"}


def test_a_replica_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_replicas(Settings(), 0)


def test_replicas_are_refused_in_embedded_mode() -> None:
    with pytest.raises(SystemExit, match="--replicas needs REELBATCH_MODE=distributed"):
        run_system(Settings(mode="embedded"), workers=1, replicas=2)
