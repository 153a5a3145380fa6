"""API keys: generated with high entropy, stored only as a hash, use recorded at most once a minute.

Customer keys (`rb_live_...`) belong to one tenant; operator keys (`rb_admin_...`) carry a role.
Both are revocable, and a revoked key never authenticates again.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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


class KeyScope(StrEnum):
    """What a customer key may do (ADR-124): submit and manage batches, read, manage money.

    A key created without scopes has all three (keys issued before scopes existed were migrated
    to all three), so nothing that worked stops working.
    """

    BATCHES = "batches"
    READ = "read"
    BILLING = "billing"


ALL_SCOPES: frozenset[KeyScope] = frozenset(KeyScope)


def parse_scopes(names: Iterable[str]) -> frozenset[KeyScope]:
    """Scopes from their names (none: all of them); InvalidArgument for an unknown name."""
    scopes: set[KeyScope] = set()
    for name in names:
        try:
            scopes.add(KeyScope(name))
        except ValueError:
            known = ", ".join(scope.value for scope in KeyScope)
            raise InvalidArgument(f"scopes must be among {known}", field="scopes") from None
    return frozenset(scopes) or ALL_SCOPES


def sorted_scopes(scopes: Iterable[KeyScope]) -> list[str]:
    """Scope names in their declared order (batches, read, billing)."""
    return [scope.value for scope in KeyScope if scope in set(scopes)]


def ensure_future_expiry(expires_at: datetime | None, now: datetime) -> None:
    """Refuses an expiry that has already passed: such a key could never be used."""
    if expires_at is not None and expires_at <= now:
        raise InvalidArgument("expires_at must be in the future", field="expires_at")


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a key with this expiry no longer authenticates at `now`."""
    return expires_at is not None and now >= expires_at


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
    scopes: frozenset[KeyScope] = field(default=ALL_SCOPES)
    expires_at: datetime | None = None


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
