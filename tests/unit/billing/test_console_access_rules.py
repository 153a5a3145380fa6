"""The console's credential rules, without a database: lock-out windows, session expiry, emails,
passwords, and secrets stored only as hashes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.errors import InvalidArgument
from services.billing.domain import console_access as rules
from services.billing.domain.console_access import ConsolePolicy, ConsoleRole, ConsoleSession, ConsoleUser
from services.billing.domain.ids import TenantId

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = ConsolePolicy(
    max_failures=3, failure_window_seconds=600, lockout_seconds=900, session_idle_seconds=1800
)


def test_the_account_locks_on_the_last_allowed_failure_and_unlocks_after_the_lockout() -> None:
    state = None
    for minute in range(POLICY.max_failures):
        state = rules.after_failure(state, NOW + timedelta(minutes=minute), POLICY)
    assert state is not None and state.failures == 3
    locked_at = NOW + timedelta(minutes=2)
    assert rules.lock_remaining(state, locked_at) == POLICY.lockout_seconds
    assert rules.lock_remaining(state, locked_at + timedelta(seconds=POLICY.lockout_seconds)) == 0
    # After the lock, counting starts over: one failure does not lock again.
    after = rules.after_failure(state, locked_at + timedelta(seconds=POLICY.lockout_seconds + 1), POLICY)
    assert (after.failures, after.locked_until) == (1, None)


def test_failures_older_than_the_window_are_forgotten() -> None:
    state = rules.after_failure(None, NOW, POLICY)
    state = rules.after_failure(state, NOW + timedelta(minutes=1), POLICY)
    later = rules.after_failure(state, NOW + timedelta(seconds=POLICY.failure_window_seconds), POLICY)
    assert (later.failures, later.locked_until) == (1, None)


def _session(last_seen: datetime, expires: datetime, *, removed: bool = False) -> ConsoleSession:
    user = ConsoleUser(
        uuid.uuid4(),
        TenantId(uuid.uuid4()),
        "a@b.example",
        ConsoleRole.FINANCE,
        NOW,
        NOW if removed else None,
    )
    return ConsoleSession(uuid.uuid4(), user, "csrf", NOW, last_seen, expires)


def test_a_session_ends_when_idle_when_too_old_when_revoked_or_when_its_user_is_removed() -> None:
    fresh = _session(NOW, NOW + timedelta(hours=12))
    assert fresh.is_valid(NOW + timedelta(minutes=29), POLICY)
    assert not fresh.is_valid(NOW + timedelta(minutes=30), POLICY)
    assert not _session(NOW, NOW + timedelta(minutes=5)).is_valid(NOW + timedelta(minutes=5), POLICY)
    assert not _session(NOW, NOW + timedelta(hours=1), removed=True).is_valid(NOW, POLICY)


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "two@@at.example", "spa ce@x.example", "a@nodot", "x" * 250 + "@a.example"]
)
def test_an_address_that_is_not_an_email_is_refused_on_its_field(email: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        rules.normalized_email(email)
    assert refused.value.violations[0].field == "email"


def test_emails_compare_trimmed_and_in_lower_case() -> None:
    assert rules.normalized_email("  Finance@Studio.EXAMPLE ") == "finance@studio.example"


def test_passwords_have_bounds_and_are_hashed_with_argon2id() -> None:
    for weak in ("", "short", "x" * (rules.MIN_PASSWORD_CHARS - 1), "x" * (rules.MAX_PASSWORD_CHARS + 1)):
        with pytest.raises(InvalidArgument):
            rules.check_password(weak)
    stored = rules.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert rules.password_matches(stored, "correct horse battery")
    assert not rules.password_matches(stored, "correct horse battery!")
    # No user: the decoy hash is checked and nothing matches, not even the decoy's own secret.
    assert not rules.password_matches(None, "correct horse battery")
    assert not rules.password_matches("not a hash", "anything")


def test_secrets_are_random_and_stored_only_as_their_hash() -> None:
    first, second = rules.new_secret(), rules.new_secret()
    assert first != second and len(first) >= 43
    assert rules.secret_hash(first) != first and len(rules.secret_hash(first)) == 64
    assert rules.secret_hash(first) == rules.secret_hash(first)


def test_an_unknown_role_is_refused_on_its_field() -> None:
    assert rules.parse_role("finance") is ConsoleRole.FINANCE
    with pytest.raises(InvalidArgument) as refused:
        rules.parse_role("admin")
    assert refused.value.violations[0].field == "role"
