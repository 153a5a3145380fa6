"""Console access on a real PostgreSQL: invites are single-use and expire, sign-in locks out after
repeated failures (counted in the database, so every replica sees them), sessions end when idle,
too old or signed out, the last owner stays, and every change is in the tenant's activity log."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from libs.db import Database
from libs.errors import InvalidArgument
from services.billing.domain.console_access import OPERATOR, Actor, ActorKind, ConsolePolicy
from services.billing.domain.errors import (
    AccountLocked,
    ConsoleUserExists,
    InvalidCredentials,
    InviteNotFound,
    LastOwner,
    MemberNotFound,
    NotAnOwner,
    SessionExpired,
)
from services.billing.domain.ids import TenantId
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import Clock, HandlersFactory

PASSWORD = "correct horse battery staple"
POLICY = ConsolePolicy(
    invite_seconds=3600,
    session_idle_seconds=600,
    session_max_seconds=3600,
    max_failures=3,
    failure_window_seconds=300,
    lockout_seconds=120,
)


@pytest.fixture
def console(make_handlers: HandlersFactory, database: Database, clock: Clock) -> BillingHandlers:
    handlers = make_handlers()
    return BillingHandlers(
        handlers.dependencies.repository,
        handlers.dependencies.prices,
        outcome_source=None,
        chunk_size=200,
        clock=clock,
        console_policy=POLICY,
    )


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@studio.example"


async def _member(console: BillingHandlers, tenant_id: TenantId, role: str = "owner") -> tuple[str, str]:
    """A signed-up member: (email, user id)."""
    email = _email()
    issued = await console.create_console_invite(tenant_id, email, role, OPERATOR)
    session = await console.accept_console_invite(issued.token, PASSWORD, "10.0.0.1")
    return email, str(session.session.user.user_id)


async def test_an_invite_link_works_once_and_signs_the_new_user_in(console: BillingHandlers) -> None:
    tenant_id = await console.create_tenant("studio")
    issued = await console.create_console_invite(tenant_id, " Finance@Studio.Example ", "finance", OPERATOR)
    assert (await console.get_console_invite(issued.token)).email == "finance@studio.example"

    session = await console.accept_console_invite(issued.token, PASSWORD, "10.0.0.1")
    assert session.session.user.role.value == "finance"
    assert session.session.user.tenant_id == tenant_id
    assert (await console.authenticate_console_session(session.token)).user.email == "finance@studio.example"

    with pytest.raises(InviteNotFound):
        await console.get_console_invite(issued.token)
    with pytest.raises(InviteNotFound):
        await console.accept_console_invite(issued.token, PASSWORD, "10.0.0.2")


async def test_an_expired_or_revoked_invite_is_not_found(console: BillingHandlers, clock: Clock) -> None:
    tenant_id = await console.create_tenant("studio")
    expiring = await console.create_console_invite(tenant_id, _email(), "developer", OPERATOR)
    revoked = await console.create_console_invite(tenant_id, _email(), "developer", OPERATOR)
    await console.revoke_console_invite(tenant_id, str(revoked.invite.invite_id), OPERATOR)
    clock.now += timedelta(seconds=POLICY.invite_seconds + 1)
    for token in (expiring.token, revoked.token):
        with pytest.raises(InviteNotFound):
            await console.accept_console_invite(token, PASSWORD, "")


async def test_sign_in_locks_the_account_after_repeated_failures_until_the_lockout_ends(
    console: BillingHandlers, clock: Clock
) -> None:
    tenant_id = await console.create_tenant("studio")
    email, _ = await _member(console, tenant_id)
    for _ in range(POLICY.max_failures):
        with pytest.raises(InvalidCredentials):
            await console.sign_in_console(email, "wrong password!!", "10.0.0.9")
    # Locked: even the right password is refused, and the answer says how long to wait.
    with pytest.raises(AccountLocked) as locked:
        await console.sign_in_console(email, PASSWORD, "10.0.0.9")
    assert 0 < int(locked.value.details["retry_after_seconds"]) <= POLICY.lockout_seconds
    clock.now += timedelta(seconds=POLICY.lockout_seconds + 1)
    assert (await console.sign_in_console(email, PASSWORD, "10.0.0.9")).session.user.email == email
    actions = [entry.action for entry in (await console.list_activity(tenant_id))[0]]
    assert actions[:2] == ["console.signed_in", "console.locked_out"]
    assert actions.count("console.sign_in_failed") == POLICY.max_failures - 1


async def test_failures_are_counted_in_the_database_so_another_replica_sees_them(
    console: BillingHandlers, database: Database, clock: Clock
) -> None:
    tenant_id = await console.create_tenant("studio")
    email, _ = await _member(console, tenant_id)
    other_replica = BillingHandlers(
        console.dependencies.repository.__class__(database),
        console.dependencies.prices,
        outcome_source=None,
        chunk_size=200,
        clock=clock,
        console_policy=POLICY,
    )
    for replica in (console, other_replica, console):
        with pytest.raises(InvalidCredentials):
            await replica.sign_in_console(email, "wrong password!!", "")
    with pytest.raises(AccountLocked):
        await other_replica.sign_in_console(email, PASSWORD, "")


async def test_an_unknown_email_fails_like_a_wrong_password(console: BillingHandlers) -> None:
    with pytest.raises(InvalidCredentials):
        await console.sign_in_console(_email(), PASSWORD, "")
    with pytest.raises(InvalidCredentials):
        await console.sign_in_console("not an email", PASSWORD, "")


async def test_sessions_end_when_idle_too_long_or_past_their_lifetime(
    console: BillingHandlers, clock: Clock
) -> None:
    tenant_id = await console.create_tenant("studio")
    email, _ = await _member(console, tenant_id)
    idle = await console.sign_in_console(email, PASSWORD, "")
    kept_busy = await console.sign_in_console(email, PASSWORD, "")
    # Used every 5 minutes: the idle timeout (10 minutes) never hits, the lifetime (1 hour) does.
    for _ in range(11):
        clock.now += timedelta(seconds=300)
        await console.authenticate_console_session(kept_busy.token)
    with pytest.raises(SessionExpired):
        await console.authenticate_console_session(idle.token)
    clock.now += timedelta(seconds=301)
    with pytest.raises(SessionExpired):
        await console.authenticate_console_session(kept_busy.token)


async def test_signing_out_everywhere_ends_every_session_of_the_user_only(console: BillingHandlers) -> None:
    tenant_id = await console.create_tenant("studio")
    email, _ = await _member(console, tenant_id)
    other_email, _ = await _member(console, tenant_id, "developer")
    first = await console.sign_in_console(email, PASSWORD, "")
    second = await console.sign_in_console(email, PASSWORD, "")
    colleague = await console.sign_in_console(other_email, PASSWORD, "")
    assert await console.sign_out_console(first.token, True) >= 2
    for ended in (first, second):
        with pytest.raises(SessionExpired):
            await console.authenticate_console_session(ended.token)
    await console.authenticate_console_session(colleague.token)
    assert await console.sign_out_console(colleague.token, False) == 1
    with pytest.raises(SessionExpired):
        await console.authenticate_console_session(colleague.token)


async def test_only_an_owner_of_the_tenant_manages_members_and_the_last_owner_stays(
    console: BillingHandlers,
) -> None:
    tenant_id = await console.create_tenant("studio")
    other_tenant = await console.create_tenant("rival")
    _, owner_id = await _member(console, tenant_id, "owner")
    _, finance_id = await _member(console, tenant_id, "finance")
    _, rival_owner_id = await _member(console, other_tenant, "owner")
    owner = Actor(ActorKind.USER, owner_id)
    with pytest.raises(NotAnOwner):
        await console.create_console_invite(tenant_id, _email(), "owner", Actor(ActorKind.USER, finance_id))
    with pytest.raises(NotAnOwner):
        await console.create_console_invite(
            tenant_id, _email(), "owner", Actor(ActorKind.USER, rival_owner_id)
        )
    with pytest.raises(MemberNotFound):
        await console.remove_console_member(tenant_id, rival_owner_id, owner)
    with pytest.raises(LastOwner):
        await console.remove_console_member(tenant_id, owner_id, owner)
    removed = await console.remove_console_member(tenant_id, finance_id, owner)
    assert removed.removed_at is not None
    members = await console.list_console_members(tenant_id)
    assert [str(user.user_id) for user in members.users] == [owner_id]


async def test_an_owner_changes_roles_but_the_last_owner_is_never_demoted(console: BillingHandlers) -> None:
    tenant_id = await console.create_tenant("studio")
    _, owner_id = await _member(console, tenant_id, "owner")
    _, developer_id = await _member(console, tenant_id, "developer")
    _, rival_id = await _member(console, await console.create_tenant("rival"), "owner")
    owner = Actor(ActorKind.USER, owner_id)
    with pytest.raises(NotAnOwner):
        await console.change_console_member_role(
            tenant_id, owner_id, "developer", Actor(ActorKind.USER, developer_id)
        )
    with pytest.raises(MemberNotFound):
        await console.change_console_member_role(tenant_id, rival_id, "finance", owner)
    with pytest.raises(InvalidArgument):
        await console.change_console_member_role(tenant_id, developer_id, "admin", owner)
    with pytest.raises(LastOwner):
        await console.change_console_member_role(tenant_id, owner_id, "finance", owner)
    promoted = await console.change_console_member_role(tenant_id, developer_id, "owner", owner)
    assert promoted.role.value == "owner"
    # Two owners now: the first may step down, and then the second is the last one.
    stepped_down = await console.change_console_member_role(tenant_id, owner_id, "finance", owner)
    assert stepped_down.role.value == "finance"
    with pytest.raises(LastOwner):
        await console.change_console_member_role(
            tenant_id, developer_id, "developer", Actor(ActorKind.USER, developer_id)
        )
    members = (await console.list_console_members(tenant_id)).users
    roles = {str(user.user_id): user.role.value for user in members}
    assert roles == {owner_id: "finance", developer_id: "owner"}


async def test_an_email_signs_in_to_one_console_only(console: BillingHandlers) -> None:
    tenant_id = await console.create_tenant("studio")
    email, _ = await _member(console, tenant_id)
    with pytest.raises(ConsoleUserExists):
        await console.create_console_invite(await console.create_tenant("rival"), email, "owner", OPERATOR)


async def test_each_change_is_logged_in_its_own_transaction(
    console: BillingHandlers, database: Database
) -> None:
    tenant_id = await console.create_tenant("studio")
    _, owner_id = await _member(console, tenant_id, "owner")
    invite = await console.create_console_invite(
        tenant_id, _email(), "developer", Actor(ActorKind.USER, owner_id)
    )
    entries, _ = await console.list_activity(tenant_id)
    assert [entry.action for entry in entries][:3] == ["member.invited", "member.joined", "member.invited"]
    assert entries[0].target_id == str(invite.invite.invite_id)
    assert entries[0].actor.kind == ActorKind.USER and entries[0].actor.label.endswith("@studio.example")
    # A refused change leaves no entry: the log is written inside the change's transaction.
    with pytest.raises(LastOwner):
        await console.remove_console_member(tenant_id, owner_id, OPERATOR)
    async with database.connection() as conn:
        count = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM billing.tenant_activity"
                    " WHERE tenant_id = :t AND action = 'member.removed'"
                ),
                {"t": tenant_id},
            )
        ).scalar_one()
    assert count == 0
    assert len((await console.list_activity(tenant_id, action="member.invited"))[0]) == 2


async def test_counters_of_made_up_emails_do_not_pile_up(console: BillingHandlers, clock: Clock) -> None:
    guessed = [_email() for _ in range(5)]
    for email in guessed:
        with pytest.raises(InvalidCredentials):
            await console.sign_in_console(email, PASSWORD, "")
    repo = console.dependencies.repository

    async def counted() -> set[str]:
        async with repo.transaction() as tx:
            found = set()
            for email in guessed:
                if await tx.console_access.sign_in_failures(email) is not None:
                    found.add(email)
            return found

    assert await counted() == set(guessed)
    # Once their window is over, the next failed sign-in (of anyone) removes them.
    clock.now += timedelta(seconds=POLICY.failure_window_seconds + 1)
    with pytest.raises(InvalidCredentials):
        await console.sign_in_console(_email(), PASSWORD, "")
    assert await counted() == set()
