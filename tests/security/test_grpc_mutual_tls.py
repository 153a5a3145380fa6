"""Mutual TLS on internal gRPC with certificates from scripts/make_certs.sh: a billing server that
requires client certificates refuses a client without one and serves a client with one."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import grpc
import pytest
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.config import Settings
from libs.rpc.client import open_channel
from libs.rpc.server import GrpcServer, start_grpc_server
from libs.rpc.tls import TlsFiles, tls_from_settings
from services.billing.entrypoints.rpc.servicer import SERVICE_NAME, BillingServicer
from services.billing.use_cases.handlers import BillingHandlers

MAKE_CERTS = Path(__file__).resolve().parents[2] / "scripts" / "make_certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([str(MAKE_CERTS), str(out)], check=True, capture_output=True, timeout=60)
    return out


def _files(certs: Path, name: str) -> TlsFiles:
    return TlsFiles(certs / "ca.pem", certs / f"{name}.pem", certs / f"{name}-key.pem")


@pytest.fixture
async def tls_billing(certs: Path, billing_handlers: BillingHandlers) -> AsyncIterator[GrpcServer]:
    servicer = BillingServicer(billing_handlers)

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    server = await start_grpc_server("127.0.0.1:0", [register], [SERVICE_NAME], tls=_files(certs, "billing"))
    yield server
    await server.stop(0)


async def test_a_client_with_a_certificate_from_the_ca_is_served(
    tls_billing: GrpcServer, certs: Path
) -> None:
    async with open_channel(f"localhost:{tls_billing.port}", tls=_files(certs, "gateway")) as channel:
        tenant = await billing_pb2_grpc.BillingServiceStub(channel).CreateTenant(
            billing_pb2.CreateTenantRequest(name="over mTLS"), timeout=5
        )
    assert tenant.tenant_id


async def test_a_list_of_named_replicas_is_served_over_mutual_tls(
    tls_billing: GrpcServer, certs: Path, billing_handlers: BillingHandlers
) -> None:
    servicer = BillingServicer(billing_handlers)

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    second = await start_grpc_server("127.0.0.1:0", [register], [SERVICE_NAME], tls=_files(certs, "billing"))
    target = f"localhost:{tls_billing.port},localhost:{second.port}"
    try:
        async with open_channel(target, tls=_files(certs, "gateway")) as channel:
            for _ in range(4):  # round robin: both replicas answer over mutual TLS
                tenant = await billing_pb2_grpc.BillingServiceStub(channel).CreateTenant(
                    billing_pb2.CreateTenantRequest(name="over mTLS, replicated"), timeout=5
                )
                assert tenant.tenant_id
    finally:
        await second.stop(0)


async def test_a_client_without_a_certificate_is_refused(tls_billing: GrpcServer, certs: Path) -> None:
    no_client_cert = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{tls_billing.port}", no_client_cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing_pb2_grpc.BillingServiceStub(channel).CreateTenant(
                billing_pb2.CreateTenantRequest(name="anonymous"), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_is_refused(tls_billing: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"localhost:{tls_billing.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing_pb2_grpc.BillingServiceStub(channel).CreateTenant(
                billing_pb2.CreateTenantRequest(name="plaintext"), timeout=5
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_is_configured_all_or_nothing_and_off_in_embedded_mode(certs: Path) -> None:
    ca, cert, key = str(certs / "ca.pem"), str(certs / "billing.pem"), str(certs / "billing-key.pem")

    def configured(mode: Literal["embedded", "distributed"]) -> Settings:
        return Settings(mode=mode, grpc_tls_ca_file=ca, grpc_tls_cert_file=cert, grpc_tls_key_file=key)

    assert tls_from_settings(configured("distributed")) == _files(certs, "billing")
    assert tls_from_settings(configured("embedded")) is None
    assert tls_from_settings(Settings(mode="distributed")) is None
    with pytest.raises(ValueError, match="must be set together"):
        Settings(mode="distributed", grpc_tls_ca_file=ca)
