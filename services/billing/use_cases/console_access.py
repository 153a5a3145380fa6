"""Console access use cases: invites, members, sign-in with lock-out, sessions and sign-out.

Every change is written to the tenant's activity log in the same transaction as the change
itself, so the log can never miss (or invent) one. Password hashing and checking are CPU-heavy
(argon2id, tens of milliseconds), so they run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.errors import InvalidArgument
from services.billing.adapters.repository import LedgerTransaction
from services.billing.domain import console_access as rules
from services.billing.domain.console_access import (
    ActivityEntry,
    Actor,
    ActorKind,
    ConsoleInvite,
    ConsoleRole,
    ConsoleSession,
    ConsoleUser,
)
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
from services.billing.use_cases.dependencies import Dependencies
from services.billing.use_cases.tenants import require_tenant

# Each failed sign-in deletes at most this many counters of other emails whose window is over.
STALE_FAILURES_PER_SIGN_IN = 100


@dataclass(frozen=True)
class IssuedInvite:
    """An invite and its link token in clear (returned once)."""

    invite: ConsoleInvite
    token: str


@dataclass(frozen=True)
class IssuedSession:
    """A new session and its cookie token in clear (returned once)."""

    token: str
    session: ConsoleSession


@dataclass(frozen=True)
class Members:
    """A tenant's active users and open invites."""

    users: list[ConsoleUser]
    invites: list[ConsoleInvite]


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A UUID argument, or a precise InvalidArgument."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None


async def _acting(tx: LedgerTransaction, tenant_id: TenantId, actor: Actor) -> Actor:
    """The actor as the log names them, after checking they may manage the tenant's members:
    operators may; a console user only as an active owner of this very tenant."""
    await require_tenant(tx, tenant_id)
    if actor.kind == ActorKind.OPERATOR:
        return actor
    if actor.kind != ActorKind.USER:
        raise NotAnOwner()
    user = await tx.console_access.get_user(tenant_id, parse_uuid(actor.actor_id, "actor.id"))
    if user is None or user.role != ConsoleRole.OWNER:
        raise NotAnOwner()
    return Actor(ActorKind.USER, str(user.user_id), user.email)


async def _open_session(
    deps: Dependencies, tx: LedgerTransaction, user: ConsoleUser, client_address: str, now: datetime
) -> IssuedSession:
    token, session_id, csrf_token = rules.new_secret(), uuid.uuid4(), rules.new_secret()
    expires_at = now + timedelta(seconds=deps.console_policy.session_max_seconds)
    await tx.console_access.insert_session(
        session_id, rules.secret_hash(token), user.user_id, csrf_token, client_address, now, expires_at
    )
    session = ConsoleSession(session_id, user, csrf_token, now, now, expires_at)
    return IssuedSession(token=token, session=session)


async def create_invite(
    deps: Dependencies, tenant_id: TenantId, email: str, role: str, actor: Actor
) -> IssuedInvite:
    """A one-time, expiring invite link for `email` with `role`, by an operator or an owner."""
    parsed_role = rules.parse_role(role)
    email = rules.normalized_email(email)
    token = rules.new_secret()
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        actor = await _acting(tx, tenant_id, actor)
        if await tx.console_access.active_email_exists(email):
            raise ConsoleUserExists(email)
        invite = ConsoleInvite(
            invite_id=uuid.uuid4(),
            tenant_id=tenant_id,
            email=email,
            role=parsed_role,
            invited_by=actor,
            created_at=now,
            expires_at=now + timedelta(seconds=deps.console_policy.invite_seconds),
        )
        await tx.console_access.insert_invite(invite, rules.secret_hash(token))
        await tx.activity.record(
            ActivityEntry(
                tenant_id, actor, "member.invited", "invite", str(invite.invite_id), f"{email} as {role}"
            ),
            now,
        )
    return IssuedInvite(invite=invite, token=token)


async def get_invite(deps: Dependencies, token: str) -> ConsoleInvite:
    """The open invite of a link token; InviteNotFound when unknown, used, withdrawn or expired."""
    async with deps.repository.transaction() as tx:
        invite = await tx.console_access.find_invite(rules.secret_hash(token)) if token else None
    if invite is None or not invite.is_open(deps.clock()):
        raise InviteNotFound()
    return invite


async def accept_invite(deps: Dependencies, token: str, password: str, client_address: str) -> IssuedSession:
    """Uses an invite once: the user is created with `password` and signed in."""
    rules.check_password(password)
    password_hash = await asyncio.to_thread(rules.hash_password, password)
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        # Locked: two browsers using one link at once make one user, the other gets a 404.
        invite = await tx.console_access.find_invite(rules.secret_hash(token), lock=True) if token else None
        if invite is None or not invite.is_open(now):
            raise InviteNotFound()
        user = await tx.console_access.insert_user(
            uuid.uuid4(), invite.tenant_id, invite.email, invite.role, password_hash, invite.invite_id, now
        )
        if user is None:
            raise ConsoleUserExists(invite.email)
        await tx.console_access.mark_invite_accepted(invite.invite_id, user.user_id, now)
        issued = await _open_session(deps, tx, user, client_address, now)
        actor = Actor(ActorKind.USER, str(user.user_id), user.email)
        await tx.activity.record(
            ActivityEntry(
                user.tenant_id,
                actor,
                "member.joined",
                "user",
                str(user.user_id),
                f"{user.email} as {user.role.value}",
                client_address,
            ),
            now,
        )
    return issued


async def sign_in(deps: Dependencies, email: str, password: str, client_address: str) -> IssuedSession:
    """A new session for the right email and password; counts failures per email in the database
    and refuses a locked account (AccountLocked) before even checking its password."""
    try:
        email = rules.normalized_email(email)
    except InvalidArgument:
        raise InvalidCredentials() from None
    now = deps.clock()
    policy = deps.console_policy
    async with deps.repository.transaction() as tx:
        # The row lock serializes one account's attempts: parallel guesses cannot outrun the count.
        failures = await tx.console_access.sign_in_failures(email)
        wait = rules.lock_remaining(failures, now)
        if wait > 0:
            raise AccountLocked(math.ceil(wait))
        found = await tx.console_access.find_user_by_email(email)
        user, stored_hash = found if found is not None else (None, None)
        matches = await asyncio.to_thread(rules.password_matches, stored_hash, password)
        if user is None or not matches:
            after = rules.after_failure(failures, now, policy)
            await tx.console_access.save_sign_in_failures(email, after)
            await tx.console_access.forget_stale_failures(
                now - timedelta(seconds=policy.failure_window_seconds), now, STALE_FAILURES_PER_SIGN_IN
            )
            if user is not None:
                action = "console.locked_out" if after.locked_until else "console.sign_in_failed"
                await tx.activity.record(
                    ActivityEntry(
                        user.tenant_id,
                        Actor(ActorKind.USER, str(user.user_id), user.email),
                        action,
                        "user",
                        str(user.user_id),
                        f"{after.failures} failed attempt(s)",
                        client_address,
                    ),
                    now,
                )
            issued = None
        else:
            await tx.console_access.clear_sign_in_failures(email)
            issued = await _open_session(deps, tx, user, client_address, now)
            await tx.activity.record(
                ActivityEntry(
                    user.tenant_id,
                    Actor(ActorKind.USER, str(user.user_id), user.email),
                    "console.signed_in",
                    "session",
                    str(issued.session.session_id),
                    "",
                    client_address,
                ),
                now,
            )
    # Raised after the commit: the failure just counted must be kept.
    if issued is None:
        raise InvalidCredentials()
    return issued


async def authenticate_session(deps: Dependencies, token: str) -> ConsoleSession:
    """The valid session of a cookie token (its last-seen time moved on); SessionExpired otherwise."""
    if not token:
        raise SessionExpired()
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        session = await tx.console_access.find_session(rules.secret_hash(token))
        if session is None or not session.is_valid(now, deps.console_policy):
            raise SessionExpired()
        if session.needs_touch(now, deps.console_policy):
            await tx.console_access.touch_session(session.session_id, now)
            session = ConsoleSession(
                session.session_id,
                session.user,
                session.csrf_token,
                session.created_at,
                now,
                session.expires_at,
            )
    return session


async def sign_out(deps: Dependencies, token: str, all_sessions: bool) -> int:
    """Ends the session of `token` (or every session of its user); how many ended. Idempotent."""
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        session = await tx.console_access.find_session(rules.secret_hash(token)) if token else None
        if session is None:
            return 0
        user = session.user
        if all_sessions:
            ended = await tx.console_access.revoke_sessions(now, user_id=user.user_id)
        else:
            ended = await tx.console_access.revoke_sessions(now, session_id=session.session_id)
        if ended:
            await tx.activity.record(
                ActivityEntry(
                    user.tenant_id,
                    Actor(ActorKind.USER, str(user.user_id), user.email),
                    "console.signed_out_everywhere" if all_sessions else "console.signed_out",
                    "user",
                    str(user.user_id),
                    f"{ended} session(s) ended",
                ),
                now,
            )
    return ended


async def list_members(deps: Dependencies, tenant_id: TenantId) -> Members:
    """The tenant's active users (oldest first) and open invites (newest first)."""
    async with deps.repository.transaction() as tx:
        await require_tenant(tx, tenant_id)
        users = await tx.console_access.list_users(tenant_id)
        invites = await tx.console_access.open_invites(tenant_id, deps.clock())
    return Members(users=users, invites=invites)


async def _no_longer_owner(
    tx: LedgerTransaction, tenant_id: TenantId, member_id: uuid.UUID, user_id: str, change: str
) -> ConsoleUser:
    """The member (locked) about to stop being what they are; LastOwner for the tenant's last owner."""
    user = await tx.console_access.get_user(tenant_id, member_id, lock=True)
    if user is None:
        raise MemberNotFound("member", user_id)
    if user.role == ConsoleRole.OWNER and await tx.console_access.count_owners(tenant_id) <= 1:
        raise LastOwner(change)
    return user


async def remove_member(deps: Dependencies, tenant_id: TenantId, user_id: str, actor: Actor) -> ConsoleUser:
    """Removes a member and ends their sessions; the last owner stays (LastOwner)."""
    member_id = parse_uuid(user_id, "user_id")
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        actor = await _acting(tx, tenant_id, actor)
        user = await _no_longer_owner(tx, tenant_id, member_id, user_id, "removed")
        removed = await tx.console_access.remove_user(member_id, now)
        await tx.console_access.revoke_sessions(now, user_id=member_id)
        await tx.activity.record(
            ActivityEntry(
                tenant_id, actor, "member.removed", "user", user_id, f"{user.email} ({user.role.value})"
            ),
            now,
        )
    return removed


async def change_role(
    deps: Dependencies, tenant_id: TenantId, user_id: str, role: str, actor: Actor
) -> ConsoleUser:
    """Gives a member another role; demoting the last owner is refused (LastOwner). Logged; the
    same role again changes and logs nothing."""
    member_id = parse_uuid(user_id, "user_id")
    new_role = rules.parse_role(role)
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        actor = await _acting(tx, tenant_id, actor)
        user = await tx.console_access.get_user(tenant_id, member_id)
        if user is not None and user.role == new_role:
            return user
        user = await _no_longer_owner(tx, tenant_id, member_id, user_id, "demoted")
        changed = await tx.console_access.set_role(member_id, new_role)
        await tx.activity.record(
            ActivityEntry(
                tenant_id,
                actor,
                "member.role_changed",
                "user",
                user_id,
                f"{user.email}: {user.role.value} -> {new_role.value}",
            ),
            now,
        )
    return changed


async def revoke_invite(
    deps: Dependencies, tenant_id: TenantId, invite_id: str, actor: Actor
) -> ConsoleInvite:
    """Withdraws one of the tenant's invites (idempotent: a second call changes and logs nothing)."""
    parsed_id = parse_uuid(invite_id, "invite_id")
    now = deps.clock()
    async with deps.repository.transaction() as tx:
        actor = await _acting(tx, tenant_id, actor)
        invite = await tx.console_access.get_invite(tenant_id, parsed_id)
        if invite is None:
            raise MemberNotFound("invite", invite_id)
        revoked = await tx.console_access.revoke_invite(parsed_id, now)
        if invite.revoked_at is None:
            await tx.activity.record(
                ActivityEntry(tenant_id, actor, "invite.revoked", "invite", invite_id, invite.email), now
            )
    return revoked
