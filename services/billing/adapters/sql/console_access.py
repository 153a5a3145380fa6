"""SQL of console users, invites, sessions and failed sign-ins (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row

from libs.field_mapping import from_fields, to_record
from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import (
    console_invites,
    console_sessions,
    console_sign_in_failures,
    console_users,
)
from services.billing.domain.console_access import (
    Actor,
    ActorKind,
    ConsoleInvite,
    ConsoleRole,
    ConsoleSession,
    ConsoleUser,
    SignInFailures,
)
from services.billing.domain.ids import TenantId

_USER_COLUMNS = (
    console_users.c.id,
    console_users.c.tenant_id,
    console_users.c.email,
    console_users.c.role,
    console_users.c.created_at,
    console_users.c.removed_at,
)


def _user(row: Row[*tuple[Any, ...]]) -> ConsoleUser:
    return to_record(ConsoleUser, row, user_id=row.id)


def _invite(row: Row[*tuple[Any, ...]]) -> ConsoleInvite:
    invited_by = Actor(ActorKind(row.invited_by_kind), row.invited_by_id, row.invited_by_label)
    return to_record(ConsoleInvite, row, invite_id=row.id, invited_by=invited_by)


class ConsoleAccessQueries(TransactionQueries):
    """Console users, invites, sessions and sign-in failures, inside one transaction."""

    # Users.

    async def insert_user(
        self,
        user_id: uuid.UUID,
        tenant_id: TenantId,
        email: str,
        role: ConsoleRole,
        password_hash: str,
        invite_id: uuid.UUID,
        now: datetime,
    ) -> ConsoleUser | None:
        """Stores a user; None when an active user already has this email."""
        row = (
            await self._conn.execute(
                pg_insert(console_users)
                .values(
                    id=user_id,
                    tenant_id=tenant_id,
                    email=email,
                    role=role.value,
                    password_hash=password_hash,
                    invite_id=invite_id,
                    created_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=[console_users.c.email],
                    index_where=console_users.c.removed_at.is_(None),
                )
                .returning(*_USER_COLUMNS)
            )
        ).first()
        return None if row is None else _user(row)

    async def find_user_by_email(self, email: str) -> tuple[ConsoleUser, str] | None:
        """The active user signing in with `email`, and their password hash."""
        row = (
            await self._conn.execute(
                select(*_USER_COLUMNS, console_users.c.password_hash).where(
                    console_users.c.email == email, console_users.c.removed_at.is_(None)
                )
            )
        ).first()
        return None if row is None else (_user(row), row.password_hash)

    async def get_user(
        self, tenant_id: TenantId, user_id: uuid.UUID, *, lock: bool = False
    ) -> ConsoleUser | None:
        """One of the tenant's active users (another tenant's: None)."""
        query = select(*_USER_COLUMNS).where(
            console_users.c.id == user_id,
            console_users.c.tenant_id == tenant_id,
            console_users.c.removed_at.is_(None),
        )
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return None if row is None else _user(row)

    async def active_email_exists(self, email: str) -> bool:
        """True when an active user (of any tenant) signs in with `email`."""
        found = await self._conn.execute(
            select(console_users.c.id).where(
                console_users.c.email == email, console_users.c.removed_at.is_(None)
            )
        )
        return found.first() is not None

    async def list_users(self, tenant_id: TenantId) -> list[ConsoleUser]:
        """The tenant's active users, oldest first."""
        rows = await self._conn.execute(
            select(*_USER_COLUMNS)
            .where(console_users.c.tenant_id == tenant_id, console_users.c.removed_at.is_(None))
            .order_by(console_users.c.created_at, console_users.c.id)
        )
        return [_user(row) for row in rows]

    async def count_owners(self, tenant_id: TenantId) -> int:
        """Active owners of the tenant, their rows locked so two removals cannot both pass."""
        rows = await self._conn.execute(
            select(console_users.c.id)
            .where(
                console_users.c.tenant_id == tenant_id,
                console_users.c.role == ConsoleRole.OWNER.value,
                console_users.c.removed_at.is_(None),
            )
            .with_for_update()
        )
        return len(rows.all())

    async def remove_user(self, user_id: uuid.UUID, now: datetime) -> ConsoleUser:
        """Marks the user removed (the row stays for the activity log)."""
        return await self._update_user(user_id, removed_at=func.coalesce(console_users.c.removed_at, now))

    async def set_role(self, user_id: uuid.UUID, role: ConsoleRole) -> ConsoleUser:
        """Gives the user another role."""
        return await self._update_user(user_id, role=role.value)

    async def _update_user(self, user_id: uuid.UUID, **values: Any) -> ConsoleUser:
        """Changes columns of one user's row; the user as changed."""
        row = (
            await self._conn.execute(
                update(console_users)
                .where(console_users.c.id == user_id)
                .values(**values)
                .returning(*_USER_COLUMNS)
            )
        ).one()
        return _user(row)

    # Invites.

    async def insert_invite(self, invite: ConsoleInvite, token_hash: str) -> None:
        """Stores an invite under its token's hash."""
        await self._conn.execute(
            pg_insert(console_invites).values(
                id=invite.invite_id,
                tenant_id=invite.tenant_id,
                email=invite.email,
                role=invite.role.value,
                token_hash=token_hash,
                invited_by_kind=invite.invited_by.kind.value,
                invited_by_id=invite.invited_by.actor_id,
                invited_by_label=invite.invited_by.label,
                created_at=invite.created_at,
                expires_at=invite.expires_at,
            )
        )

    async def find_invite(self, token_hash: str, *, lock: bool = False) -> ConsoleInvite | None:
        """The invite of a link token (whatever its state), locked when about to be used."""
        query = select(console_invites).where(console_invites.c.token_hash == token_hash)
        row = (await self._conn.execute(query.with_for_update() if lock else query)).first()
        return None if row is None else _invite(row)

    async def get_invite(self, tenant_id: TenantId, invite_id: uuid.UUID) -> ConsoleInvite | None:
        """One of the tenant's invites (another tenant's: None)."""
        row = (
            await self._conn.execute(
                select(console_invites).where(
                    console_invites.c.id == invite_id, console_invites.c.tenant_id == tenant_id
                )
            )
        ).first()
        return None if row is None else _invite(row)

    async def open_invites(self, tenant_id: TenantId, now: datetime) -> list[ConsoleInvite]:
        """Invites neither used, withdrawn nor expired, newest first."""
        rows = await self._conn.execute(
            select(console_invites)
            .where(
                console_invites.c.tenant_id == tenant_id,
                console_invites.c.accepted_at.is_(None),
                console_invites.c.revoked_at.is_(None),
                console_invites.c.expires_at > now,
            )
            .order_by(console_invites.c.created_at.desc(), console_invites.c.id)
        )
        return [_invite(row) for row in rows]

    async def mark_invite_accepted(self, invite_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> None:
        await self._conn.execute(
            update(console_invites)
            .where(console_invites.c.id == invite_id)
            .values(accepted_at=now, user_id=user_id)
        )

    async def revoke_invite(self, invite_id: uuid.UUID, now: datetime) -> ConsoleInvite:
        """Withdraws an invite; the first withdrawal time is kept."""
        row = (
            await self._conn.execute(
                update(console_invites)
                .where(console_invites.c.id == invite_id)
                .values(revoked_at=func.coalesce(console_invites.c.revoked_at, now))
                .returning(console_invites)
            )
        ).one()
        return _invite(row)

    # Sessions.

    async def insert_session(
        self,
        session_id: uuid.UUID,
        token_hash: str,
        user_id: uuid.UUID,
        csrf_token: str,
        client_address: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        await self._conn.execute(
            pg_insert(console_sessions).values(
                id=session_id,
                token_hash=token_hash,
                user_id=user_id,
                csrf_token=csrf_token,
                client_address=client_address,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
            )
        )

    async def find_session(self, token_hash: str) -> ConsoleSession | None:
        """The session of a cookie token, with its user (whatever their states)."""
        s = console_sessions.c
        row = (
            await self._conn.execute(
                select(
                    *_USER_COLUMNS,
                    s.id.label("session_id"),
                    s.csrf_token,
                    s.created_at.label("session_created_at"),
                    s.last_seen_at,
                    s.expires_at,
                    s.revoked_at,
                )
                .join_from(console_sessions, console_users, console_users.c.id == s.user_id)
                .where(s.token_hash == token_hash)
            )
        ).first()
        if row is None:
            return None
        return from_fields(ConsoleSession, row, user=_user(row), created_at=row.session_created_at)

    async def touch_session(self, session_id: uuid.UUID, now: datetime) -> None:
        await self._conn.execute(
            update(console_sessions).where(console_sessions.c.id == session_id).values(last_seen_at=now)
        )

    async def revoke_sessions(
        self, now: datetime, *, session_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
    ) -> int:
        """Ends one session, or every open session of a user; how many were open."""
        s = console_sessions.c
        query = update(console_sessions).where(s.revoked_at.is_(None)).values(revoked_at=now)
        if session_id is not None:
            query = query.where(s.id == session_id)
        if user_id is not None:
            query = query.where(s.user_id == user_id)
        result = await self._conn.execute(query.returning(s.id))
        return len(result.all())

    # Failed sign-ins.

    async def sign_in_failures(self, email: str) -> SignInFailures | None:
        """The failure counters of an email, locked for the update that follows."""
        row = (
            await self._conn.execute(
                select(console_sign_in_failures)
                .where(console_sign_in_failures.c.email == email)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return SignInFailures(row.failures, row.window_started_at, row.locked_until)

    async def save_sign_in_failures(self, email: str, state: SignInFailures) -> None:
        values = {
            "failures": state.failures,
            "window_started_at": state.window_started_at,
            "locked_until": state.locked_until,
        }
        await self._conn.execute(
            pg_insert(console_sign_in_failures)
            .values(email=email, **values)
            .on_conflict_do_update(index_elements=[console_sign_in_failures.c.email], set_=values)
        )

    async def forget_stale_failures(self, window_started_before: datetime, now: datetime, limit: int) -> int:
        """Deletes up to `limit` counters whose window is over and whose lock (if any) has ended, so
        guesses at many made-up emails do not pile up rows; how many were deleted."""
        f = console_sign_in_failures.c
        stale = (
            select(f.email)
            .where(f.window_started_at < window_started_before)
            .where((f.locked_until.is_(None)) | (f.locked_until < now))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        deleted = await self._conn.execute(
            console_sign_in_failures.delete().where(f.email.in_(stale.scalar_subquery())).returning(f.email)
        )
        return len(deleted.all())

    async def clear_sign_in_failures(self, email: str) -> None:
        await self._conn.execute(
            console_sign_in_failures.delete().where(console_sign_in_failures.c.email == email)
        )
