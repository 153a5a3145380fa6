"""Console endpoints of the team (members, roles, invites, removal) and of the activity log.

Owners invite by a one-time link shown once to copy (no e-mail server is assumed); billing checks
again that the acting user is an owner of this tenant, and logs every change in its transaction.
"""

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import Annotated, TypeVar

import grpc
from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from reelbatch.proto.billing.v1 import billing_pb2

from libs.rpc.errors import remote_error
from services.gateway.admin_ui import views
from services.gateway.api.ledger_exports import csv_download
from services.gateway.console import pages
from services.gateway.console.auth import ConsoleUser, CurrentUser, form_fields
from services.gateway.console.dates import DayRange
from services.gateway.console.route_table import ALL_ROLES
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.params import CursorText, FilterText, is_uuid
from services.gateway.schemas.fields import optional_timestamp
from services.gateway.use_cases.console_invites import create_console_invite
from services.gateway.use_cases.console_reads import NotTheTenants

TEAM_PATH = "/console/team"
T = TypeVar("T")
ACTIVITY_COLUMNS = (
    "occurred_at",
    "actor_kind",
    "actor",
    "action",
    "target_kind",
    "target_id",
    "detail",
    "client_address",
)
ACTIVITY_EXPORT_PAGE = 500

# Actions are dotted words (`member.invited`); anything else matches nothing and is refused (422).
Action = Annotated[str, Query(max_length=64, pattern=r"^[a-z0-9_.]*$")]


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    """The activity log's filters as the page and its CSV take them."""

    action: str
    occurred_from: str
    occurred_to: str


async def activity_query(
    action: Action = "", occurred_from: FilterText = "", occurred_to: FilterText = ""
) -> ActivityQuery:
    """The activity filters of the query string (a day that does not parse is ignored later)."""
    # async although it awaits nothing: FastAPI runs a sync dependency in a worker thread.
    return ActivityQuery(action, occurred_from, occurred_to)


ActivityFilters = Annotated[ActivityQuery, Depends(activity_query)]


def team_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """team, invite_member, revoke_invite, remove_member, change_role, activity, activity_csv."""
    billing = deps.backends.billing
    deadline = deps.settings.grpc_deadline_seconds

    async def team_page(
        request: Request, user: ConsoleUser, *, created_url: str = "", error: str = "", status_code: int = 200
    ) -> Response:
        members = await billing.ListConsoleMembers(
            billing_pb2.ListConsoleMembersRequest(tenant_id=user.tenant_id), timeout=deadline
        )
        return pages.render(
            request,
            "team.html",
            user=user,
            active="team",
            status_code=status_code,
            members=members.users,
            invites=members.invites,
            roles=sorted(ALL_ROLES),
            is_owner=user.role == "owner",
            created_url=created_url,
            error=error,
        )

    async def team(request: Request, user: CurrentUser) -> Response:
        return await team_page(request, user)

    async def explained(
        request: Request,
        user: ConsoleUser,
        error: grpc.aio.AioRpcError,
        statuses: Mapping[grpc.StatusCode, int],
    ) -> Response:
        """The team page saying why billing refused a change, for the refusals it explains (`statuses`:
        the page's HTTP status per gRPC code); any other error is raised again."""
        status = statuses.get(error.code())
        if status is None:
            raise error
        return await team_page(request, user, error=remote_error(error).message, status_code=status)

    async def change_member(
        request: Request,
        user: ConsoleUser,
        object_id: str,
        change: Callable[[], Awaitable[object]],
        statuses: Mapping[grpc.StatusCode, int],
    ) -> Response:
        """Applies a change to one of the tenant's members or invites, then back to the team page;
        another tenant's (or a malformed) id is NotTheTenants."""
        if not is_uuid(object_id):
            raise NotTheTenants(object_id)
        try:
            await _owned(change(), object_id)
        except grpc.aio.AioRpcError as error:
            return await explained(request, user, error, statuses)
        return RedirectResponse(TEAM_PATH, status_code=303)

    async def invite_member(request: Request, user: CurrentUser) -> Response:
        form = await form_fields(request)
        try:
            created = await create_console_invite(
                billing,
                deadline,
                deps.settings.public_base_url,
                tenant_id=user.tenant_id,
                email=form.get("email", "")[:320],
                role=form.get("role", "")[:32],
                actor=user.actor(),
            )
        except grpc.aio.AioRpcError as error:
            return await explained(
                request,
                user,
                error,
                {grpc.StatusCode.INVALID_ARGUMENT: 422, grpc.StatusCode.ALREADY_EXISTS: 409},
            )
        return await team_page(request, user, created_url=created.invite_url, status_code=201)

    async def revoke_invite(request: Request, user: CurrentUser, invite_id: str) -> Response:
        return await change_member(
            request,
            user,
            invite_id,
            lambda: billing.RevokeConsoleInvite(
                billing_pb2.RevokeConsoleInviteRequest(
                    tenant_id=user.tenant_id, invite_id=invite_id, actor=user.actor()
                ),
                timeout=deadline,
            ),
            {},
        )

    async def remove_member(request: Request, user: CurrentUser, user_id: str) -> Response:
        return await change_member(
            request,
            user,
            user_id,
            lambda: billing.RemoveConsoleMember(
                billing_pb2.RemoveConsoleMemberRequest(
                    tenant_id=user.tenant_id, user_id=user_id, actor=user.actor()
                ),
                timeout=deadline,
            ),
            # The last owner cannot be removed: the page says so.
            {grpc.StatusCode.FAILED_PRECONDITION: 409},
        )

    async def change_role(request: Request, user: CurrentUser, user_id: str) -> Response:
        async def change() -> object:
            form = await form_fields(request)
            return await billing.ChangeConsoleMemberRole(
                billing_pb2.ChangeConsoleMemberRoleRequest(
                    tenant_id=user.tenant_id,
                    user_id=user_id,
                    role=form.get("role", "")[:32],
                    actor=user.actor(),
                ),
                timeout=deadline,
            )

        # An unknown role (422) or the last owner (409): the page says why.
        return await change_member(
            request,
            user,
            user_id,
            change,
            {grpc.StatusCode.INVALID_ARGUMENT: 422, grpc.StatusCode.FAILED_PRECONDITION: 409},
        )

    def activity_request(
        user: ConsoleUser, query: ActivityQuery, cursor: str, limit: int
    ) -> billing_pb2.ListTenantActivityRequest:
        days = DayRange.parse(query.occurred_from, query.occurred_to)
        return billing_pb2.ListTenantActivityRequest(
            tenant_id=user.tenant_id,
            action=query.action,
            occurred_from=optional_timestamp(days.start),
            occurred_to=optional_timestamp(days.end),
            cursor=cursor,
            limit=limit,
        )

    async def activity(
        request: Request, user: CurrentUser, query: ActivityFilters, cursor: CursorText = ""
    ) -> Response:
        filters = asdict(query)
        page = await billing.ListTenantActivity(activity_request(user, query, cursor, 50), timeout=deadline)
        return pages.render(
            request,
            "activity.html",
            user=user,
            active="activity",
            entries=page.entries,
            filters=filters,
            export=views.query_link("/console/activity.csv", filters),
            pages=views.pager(
                "/console/activity", filters, on_later_page=bool(cursor), next_cursor=page.next_cursor
            ),
        )

    async def activity_csv(request: Request, user: CurrentUser, query: ActivityFilters) -> Response:
        def page_request(cursor: str) -> billing_pb2.ListTenantActivityRequest:
            return activity_request(user, query, cursor, ACTIVITY_EXPORT_PAGE)

        # The first page is read before the 200 starts: a refusal is answered, not a cut download.
        first = await billing.ListTenantActivity(page_request(""), timeout=deadline)

        async def rows() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(ACTIVITY_COLUMNS)
            page = first
            while True:
                for entry in page.entries:
                    writer.writerow(
                        (
                            entry.occurred_at.ToDatetime(tzinfo=UTC).isoformat(),
                            entry.actor.kind,
                            entry.actor.label,
                            entry.action,
                            entry.target_kind,
                            entry.target_id,
                            entry.detail,
                            entry.client_address,
                        )
                    )
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                if not page.next_cursor:
                    return
                page = await billing.ListTenantActivity(page_request(page.next_cursor), timeout=deadline)

        return csv_download(rows(), "activity.csv")

    return {
        "team": team,
        "invite_member": invite_member,
        "revoke_invite": revoke_invite,
        "remove_member": remove_member,
        "change_role": change_role,
        "activity": activity,
        "activity_csv": activity_csv,
    }


async def _owned(call: Awaitable[T], object_id: str) -> T:
    """Awaits a call on one of the tenant's objects; NOT_FOUND (another tenant's) -> NotTheTenants."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            raise NotTheTenants(object_id) from None
        raise
