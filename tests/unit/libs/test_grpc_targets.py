"""Listen and target settings of the gRPC services, and how a target names several replicas."""

from __future__ import annotations

import pytest

from libs.config import Settings
from libs.rpc.client import channel_target


def test_one_address_setting_stays_the_default_of_both_listen_and_target() -> None:
    settings = Settings(billing_grpc_addr="10.0.0.5:50051")
    assert settings.grpc_listen("billing") == "10.0.0.5:50051"
    assert settings.grpc_target("billing") == "10.0.0.5:50051"
    assert settings.grpc_listen("batch") == settings.batch_grpc_addr


def test_listen_and_target_are_separate_settings() -> None:
    settings = Settings(webhook_grpc_listen="0.0.0.0:50053", webhook_grpc_target="dns:///webhook:50053")
    assert settings.grpc_listen("webhook") == "0.0.0.0:50053"
    assert settings.grpc_target("webhook") == "dns:///webhook:50053"


def test_a_list_of_replicas_becomes_one_ipv4_target() -> None:
    assert channel_target("127.0.0.1:1, 127.0.0.2:2") == ("ipv4:127.0.0.1:1,127.0.0.2:2", None)


def test_a_list_of_names_is_resolved_and_keeps_the_first_name_as_authority() -> None:
    assert channel_target("localhost:7001,127.0.0.1:7002") == (
        "ipv4:127.0.0.1:7001,127.0.0.1:7002",
        "localhost",
    )


@pytest.mark.parametrize("target", ["127.0.0.1:50051", "dns:///billing:50051", "ipv4:10.0.0.1:1,10.0.0.2:1"])
def test_one_address_and_grpc_names_are_kept_as_given(target: str) -> None:
    assert channel_target(target) == (target, None)


@pytest.mark.parametrize("target", ["127.0.0.1:1,nohost", "127.0.0.1:1,dns:///b:2", "127.0.0.1:1,host:port"])
def test_a_malformed_list_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="gRPC target"):
        channel_target(target)
