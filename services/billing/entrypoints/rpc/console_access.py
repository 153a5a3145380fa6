"""gRPC calls of console access (invites, members, sessions) and tenants' activity logs."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from reelbatch.proto.billing.v1 import billing_pb2

from libs.errors import InvalidArgument
from libs.field_mapping import from_fields, to_message
from libs.rpc.timestamps import request_instant
from services.billing.domain.console_access import (
    ActivityEntry,
    Actor,
    ActorKind,
    ConsoleInvite,
    ConsoleSession,
    ConsoleUser,
)
from services.billing.domain.ids import parse_tenant_id
from services.billing.entrypoints.rpc.base import BillingRpcs, Context, timestamp
from services.billing.use_cases.console_access import IssuedSession


class ConsoleAccessRpcs(BillingRpcs):
    """The console's invites, sign-in, sessions, members, and the activity log."""

    async def CreateConsoleInvite(
        self, request: billing_pb2.CreateConsoleInviteRequest, context: Context
    ) -> billing_pb2.ConsoleInviteCreated:
        issued = await self._handlers.create_console_invite(
            parse_tenant_id(request.tenant_id), request.email, request.role, _actor(request.actor)
        )
        return billing_pb2.ConsoleInviteCreated(invite=_invite(issued.invite), token=issued.token)

    async def GetConsoleInvite(
        self, request: billing_pb2.GetConsoleInviteRequest, context: Context
    ) -> billing_pb2.ConsoleInvite:
        return _invite(await self._handlers.get_console_invite(request.token))

    async def AcceptConsoleInvite(
        self, request: billing_pb2.AcceptConsoleInviteRequest, context: Context
    ) -> billing_pb2.ConsoleSessionIssued:
        issued = await self._handlers.accept_console_invite(
            request.token, request.password, request.client_address
        )
        return self._issued(issued)

    async def SignInConsole(
        self, request: billing_pb2.SignInConsoleRequest, context: Context
    ) -> billing_pb2.ConsoleSessionIssued:
        issued = await self._handlers.sign_in_console(request.email, request.password, request.client_address)
        return self._issued(issued)

    async def AuthenticateConsoleSession(
        self, request: billing_pb2.AuthenticateConsoleSessionRequest, context: Context
    ) -> billing_pb2.ConsoleSessionInfo:
        session = await self._handlers.authenticate_console_session(request.session_token)
        return self._session(session)

    async def SignOutConsole(
        self, request: billing_pb2.SignOutConsoleRequest, context: Context
    ) -> billing_pb2.SignOutConsoleResponse:
        ended = await self._handlers.sign_out_console(request.session_token, request.all_sessions)
        return billing_pb2.SignOutConsoleResponse(sessions_ended=ended)

    async def ListConsoleMembers(
        self, request: billing_pb2.ListConsoleMembersRequest, context: Context
    ) -> billing_pb2.ListConsoleMembersResponse:
        members = await self._handlers.list_console_members(parse_tenant_id(request.tenant_id))
        return billing_pb2.ListConsoleMembersResponse(
            users=[_user(user) for user in members.users],
            invites=[_invite(invite) for invite in members.invites],
        )

    async def RemoveConsoleMember(
        self, request: billing_pb2.RemoveConsoleMemberRequest, context: Context
    ) -> billing_pb2.ConsoleUser:
        removed = await self._handlers.remove_console_member(
            parse_tenant_id(request.tenant_id), request.user_id, _actor(request.actor)
        )
        return _user(removed)

    async def ChangeConsoleMemberRole(
        self, request: billing_pb2.ChangeConsoleMemberRoleRequest, context: Context
    ) -> billing_pb2.ConsoleUser:
        changed = await self._handlers.change_console_member_role(
            parse_tenant_id(request.tenant_id), request.user_id, request.role, _actor(request.actor)
        )
        return _user(changed)

    async def RevokeConsoleInvite(
        self, request: billing_pb2.RevokeConsoleInviteRequest, context: Context
    ) -> billing_pb2.ConsoleInvite:
        revoked = await self._handlers.revoke_console_invite(
            parse_tenant_id(request.tenant_id), request.invite_id, _actor(request.actor)
        )
        return _invite(revoked)

    async def RecordTenantActivity(
        self, request: billing_pb2.TenantActivity, context: Context
    ) -> billing_pb2.RecordTenantActivityResponse:
        activity_id = await self._handlers.record_activity(
            from_fields(
                ActivityEntry,
                request,
                tenant_id=parse_tenant_id(request.tenant_id),
                actor=_actor(request.actor),
                occurred_at=request_instant(request, "occurred_at"),
                activity_id=0,
            )
        )
        return billing_pb2.RecordTenantActivityResponse(activity_id=str(activity_id))

    async def ListTenantActivity(
        self, request: billing_pb2.ListTenantActivityRequest, context: Context
    ) -> billing_pb2.ListTenantActivityResponse:
        entries, next_cursor = await self._handlers.list_activity(
            parse_tenant_id(request.tenant_id),
            action=request.action,
            actor_id=request.actor_id,
            occurred_from=request_instant(request, "occurred_from"),
            occurred_to=request_instant(request, "occurred_to"),
            cursor=request.cursor,
            limit=request.limit,
        )
        return billing_pb2.ListTenantActivityResponse(
            entries=[_activity(entry) for entry in entries], next_cursor=next_cursor
        )

    def _issued(self, issued: IssuedSession) -> billing_pb2.ConsoleSessionIssued:
        return billing_pb2.ConsoleSessionIssued(
            session_token=issued.token, session=self._session(issued.session)
        )

    def _session(self, session: ConsoleSession) -> billing_pb2.ConsoleSessionInfo:
        policy = self._handlers.dependencies.console_policy
        return billing_pb2.ConsoleSessionInfo(
            session_id=str(session.session_id),
            user=_user(session.user),
            csrf_token=session.csrf_token,
            created_at=timestamp(session.created_at),
            expires_at=timestamp(session.expires_at),
            idle_expires_at=timestamp(session.idle_expires_at(policy)),
        )


def _actor(actor: billing_pb2.ConsoleActor) -> Actor:
    try:
        kind = ActorKind(actor.kind or ActorKind.SYSTEM.value)
    except ValueError:
        raise InvalidArgument(
            "actor.kind must be user, operator, api_key or system", field="actor.kind"
        ) from None
    return Actor(kind, actor.id, actor.label)


def _actor_proto(actor: Actor) -> billing_pb2.ConsoleActor:
    return billing_pb2.ConsoleActor(kind=actor.kind.value, id=actor.actor_id, label=actor.label)


def _user(user: ConsoleUser) -> billing_pb2.ConsoleUser:
    return to_message(billing_pb2.ConsoleUser, user)


def _invite(invite: ConsoleInvite) -> billing_pb2.ConsoleInvite:
    return to_message(
        billing_pb2.ConsoleInvite,
        invite,
        invited_by=_actor_proto(invite.invited_by),
    )


def _activity(entry: ActivityEntry) -> billing_pb2.TenantActivity:
    return to_message(billing_pb2.TenantActivity, entry, actor=_actor_proto(entry.actor))
