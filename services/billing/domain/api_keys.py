"""API keys: generated with high entropy, stored only as a hash, use recorded at most once a minute.

Customer keys (`rb_live_...`) belong to one tenant; operator keys (`rb_admin_...`) carry a role.
Both are revocable, and a revoked key never authenticates again.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

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


ADMIN_KEY_PREFIX = "rb_admin_"


class AdminRole(StrEnum):
    """What an operator key may do: `admin` everything, `finance` read (GETs and exports) only."""

    ADMIN = "admin"
    FINANCE = "finance"


def parse_admin_role(value: str) -> AdminRole:
    """A role from its name; InvalidArgument for anything else."""
    try:
        return AdminRole(value)
    except ValueError:
        roles = ", ".join(role.value for role in AdminRole)
        raise InvalidArgument(f"role must be one of {roles}", field="role") from None


def generate_admin_key() -> str:
    """A new random operator key (shown once); its prefix tells it apart from customer keys."""
    return ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a customer key: never the key, only its prefix and its history."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AdminKeyInfo:
    """What may be shown about an operator key."""

    key_id: uuid.UUID
    role: AdminRole
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
