"""A gRPC server refuses to start on a port already in use (no silent SO_REUSEPORT sharing)."""

from __future__ import annotations

import pytest

from libs.rpc.server import AddressUnavailable, start_grpc_server
from tests.stack import free_port


async def test_a_second_server_on_a_taken_port_fails_to_start_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    first = await start_grpc_server(address, [], ["reelbatch.test.Probe"])
    try:
        with pytest.raises(
            AddressUnavailable, match=f"cannot listen for gRPC on {address}: the port is already in use"
        ):
            await start_grpc_server(address, [], ["reelbatch.test.Probe"])
    finally:
        await first.stop(0)


async def test_a_free_port_still_binds_and_port_zero_picks_one() -> None:
    server = await start_grpc_server("127.0.0.1:0", [], ["reelbatch.test.Probe"])
    try:
        assert server.port > 0
    finally:
        await server.stop(0)
