"""API key generation, hashing and how often a use is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.errors import InvalidArgument
from services.billing.domain.api_keys import (
    ensure_registrable,
    generate_api_key,
    hash_api_key,
    key_prefix,
    should_record_use,
)


def test_generated_keys_are_prefixed_random_and_long() -> None:
    keys = {generate_api_key() for _ in range(50)}

    assert len(keys) == 50
    assert all(key.startswith("rb_live_") and len(key) >= 40 for key in keys)


def test_a_key_is_stored_as_its_sha256_and_support_sees_only_a_prefix() -> None:
    assert hash_api_key("demo-key") == "c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c"
    assert hash_api_key("demo-key") == hash_api_key("demo-key") != hash_api_key("demo-kez")
    assert key_prefix("rb_live_abcdefgh") == "rb_live_abcd"


def test_chosen_keys_shorter_than_eight_characters_are_refused() -> None:
    ensure_registrable("demo-key")
    with pytest.raises(InvalidArgument):
        ensure_registrable("short")


def test_a_use_is_recorded_at_most_once_a_minute() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    assert should_record_use(None, now)
    assert not should_record_use(now - timedelta(seconds=59), now)
    assert should_record_use(now - timedelta(seconds=60), now)
