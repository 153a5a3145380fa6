"""API keys: generated with high entropy, stored only as a hash, use recorded at most once a minute."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from libs.errors import InvalidArgument

GENERATED_PREFIX = "rb_live_"
MIN_KEY_LENGTH = 8
PREFIX_LENGTH = 12
# Recording every use would make each authenticated request a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def generate_api_key() -> str:
    """A new random key (shown to the customer once)."""
    return GENERATED_PREFIX + secrets.token_urlsafe(32)


def ensure_registrable(api_key: str) -> None:
    """Refuses a caller-chosen key too short to be a credential."""
    if len(api_key) < MIN_KEY_LENGTH:
        raise InvalidArgument(f"api_key must be at least {MIN_KEY_LENGTH} characters", field="api_key")


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex: keys are high-entropy random, so a fast unsalted hash is enough."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_prefix(api_key: str) -> str:
    """The part of a key support may see."""
    return api_key[:PREFIX_LENGTH]


def should_record_use(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether `last_used_at` is stale enough to be written again."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION
