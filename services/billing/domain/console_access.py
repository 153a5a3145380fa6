"""Who may sign in to a tenant's customer console, and the rules of their credentials.

Console users are people (email + password), with a role; they join by a one-time invite link
and stay signed in through server-side sessions. Every secret handed to a browser (invite link
token, session token) is random and stored only as its SHA-256; passwords are hashed with
argon2id (argon2-cffi). Lock-out after repeated failed sign-ins is decided here from counters the
database keeps (so every gateway and billing replica sees the same ones).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from libs.errors import InvalidArgument
from services.billing.domain.ids import TenantId

MIN_PASSWORD_CHARS = 12
# argon2 hashes any length, but a megabyte password is a denial of service, not a password.
MAX_PASSWORD_CHARS = 256
MAX_EMAIL_CHARS = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher()
# Compared against when the email is unknown, so an unknown email costs as long as a wrong password.
_DECOY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class ConsoleRole(StrEnum):
    """`owner` (everything, manages members), `developer` (keys, webhooks, batches), `finance`
    (read-only money: batches, usage, ledger, statements, exports)."""

    OWNER = "owner"
    DEVELOPER = "developer"
    FINANCE = "finance"


class ActorKind(StrEnum):
    """Who did something: a console user, the vendor's operator, an API key, or the system."""

    USER = "user"
    OPERATOR = "operator"
    API_KEY = "api_key"
    SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who did something, as the activity log names them."""

    kind: ActorKind
    actor_id: str = ""
    label: str = ""


OPERATOR = Actor(ActorKind.OPERATOR, "", "operator")


@dataclass(frozen=True)
class ConsolePolicy:
    """How long links and sessions last, and when sign-in locks an account (from settings)."""

    invite_seconds: int = 7 * 24 * 3600
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    max_failures: int = 5
    failure_window_seconds: int = 15 * 60
    lockout_seconds: int = 15 * 60
    # A session's last-seen time is written at most this often (not on every page view).
    touch_interval_seconds: int = 30


@dataclass(frozen=True)
class ConsoleUser:
    """A person who may sign in to one tenant's console."""

    user_id: uuid.UUID
    tenant_id: TenantId
    email: str
    role: ConsoleRole
    created_at: datetime
    removed_at: datetime | None = None


@dataclass(frozen=True)
class ConsoleInvite:
    """An invitation (its token is never kept, only the token's hash)."""

    invite_id: uuid.UUID
    tenant_id: TenantId
    email: str
    role: ConsoleRole
    invited_by: Actor
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        """Neither used, withdrawn nor expired."""
        return self.accepted_at is None and self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: its user, its CSRF token and its two deadlines."""

    session_id: uuid.UUID
    user: ConsoleUser
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def idle_expires_at(self, policy: ConsolePolicy) -> datetime:
        """When the session ends unless used before."""
        return self.last_seen_at + timedelta(seconds=policy.session_idle_seconds)

    def is_valid(self, now: datetime, policy: ConsolePolicy) -> bool:
        """Not signed out, not idle too long, not past its absolute lifetime, user still a member."""
        return (
            self.revoked_at is None
            and self.user.removed_at is None
            and now < self.expires_at
            and now < self.idle_expires_at(policy)
        )

    def needs_touch(self, now: datetime, policy: ConsolePolicy) -> bool:
        """True when the last-seen time is old enough to be written again."""
        return now - self.last_seen_at >= timedelta(seconds=policy.touch_interval_seconds)


@dataclass(frozen=True)
class SignInFailures:
    """Failed sign-ins of one email: how many in the current window, and any lock."""

    failures: int
    window_started_at: datetime
    locked_until: datetime | None


@dataclass(frozen=True)
class ActivityEntry:
    """One line of a tenant's activity log (audit log)."""

    tenant_id: TenantId
    actor: Actor
    action: str
    target_kind: str = ""
    target_id: str = ""
    detail: str = ""
    client_address: str = ""
    occurred_at: datetime | None = None
    activity_id: int = 0


def parse_role(value: str) -> ConsoleRole:
    """A role by name; a precise InvalidArgument otherwise."""
    try:
        return ConsoleRole(value)
    except ValueError:
        raise InvalidArgument("role must be owner, developer or finance", field="role") from None


def normalized_email(value: str) -> str:
    """The email as stored and compared: trimmed and lower case; InvalidArgument when it is not one."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        raise InvalidArgument("email must be an email address", field="email")
    return email


def check_password(password: str) -> None:
    """Refuses a password too short to resist guessing, or absurdly long."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidArgument(f"password must be at least {MIN_PASSWORD_CHARS} characters", field="password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidArgument(f"password must be at most {MAX_PASSWORD_CHARS} characters", field="password")


def hash_password(password: str) -> str:
    """The argon2id hash to store (CPU-heavy: call it off the event loop)."""
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """True when `password` is the one hashed; with no user (None) a decoy hash is checked, so
    an unknown email takes as long as a wrong password (CPU-heavy: call it off the event loop)."""
    try:
        return _HASHER.verify(stored_hash or _DECOY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    """A random token for a link, a session cookie or a CSRF field (256 bits)."""
    return secrets.token_urlsafe(32)


def secret_hash(token: str) -> str:
    """What is stored of a token: its SHA-256 (a 256-bit random token needs no slow hash)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def lock_remaining(state: SignInFailures | None, now: datetime) -> float:
    """Seconds until a locked account may try again (0 when not locked)."""
    if state is None or state.locked_until is None or state.locked_until <= now:
        return 0.0
    return (state.locked_until - now).total_seconds()


def after_failure(state: SignInFailures | None, now: datetime, policy: ConsolePolicy) -> SignInFailures:
    """The counters after one more failed sign-in: a new window once the old one is over; locked
    for `lockout_seconds` when the window holds `max_failures` failures."""
    window = timedelta(seconds=policy.failure_window_seconds)
    lock_over = state is not None and state.locked_until is not None and state.locked_until <= now
    if state is None or lock_over or now - state.window_started_at >= window:
        state = SignInFailures(failures=0, window_started_at=now, locked_until=None)
    failures = state.failures + 1
    locked_until = (
        now + timedelta(seconds=policy.lockout_seconds) if failures >= policy.max_failures else None
    )
    return SignInFailures(
        failures=failures, window_started_at=state.window_started_at, locked_until=locked_until
    )
