"""Console endpoints of developers: API keys (created and shown once, revoked, last used), webhook
endpoints (registered with their event types, secrets rotated) and the delivery log as a timeline
per message, with a replay of one message or of every failed message since a time.

A new key's or endpoint's secret is shown in the answer to the form that created it, never again
(no redirect: the page carrying it is the POST's answer, and the pages are never cached).
"""

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import grpc
from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from libs.rpc.errors import remote_error
from services.gateway.console import pages
from services.gateway.console.audit import record_activity
from services.gateway.console.auth import ConsoleUser, CurrentUser, form_fields
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.key_scopes import ALL_SCOPES, KeyScope
from services.gateway.http.params import CursorText, FilterText, is_uuid
from services.gateway.schemas.fields import SINGLE_LINE_TEXT_PATTERN
from services.gateway.schemas.webhooks import WEBHOOK_EVENT_TYPES
from services.gateway.use_cases.console_developers import (
    ConsoleDevelopers,
    CreatedSecret,
    attempts_by_outcome,
)
from services.gateway.use_cases.console_reads import NotTheTenants

DELIVERIES_PATH = "/console/developers/deliveries"
MESSAGE_ID = re.compile(r"^msg_[0-9a-f]{32}$")
SINGLE_LINE = re.compile(SINGLE_LINE_TEXT_PATTERN)
MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 500


def _object_id(value: str) -> str:
    """A key's or endpoint's id from the path: a UUID, lower-cased; anything else is not found."""
    if not is_uuid(value):
        raise NotTheTenants(value)
    return value.lower()


async def _scoped(call: Any) -> Any:
    """Runs a tenant-scoped call; NOT_FOUND (another tenant's or no such object) is the console's 404."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise NotTheTenants("") from None
        raise


async def _checked(request: Request, name: str) -> list[str]:
    """Every value of a form's checkbox group (the body was read and size-checked by `form_fields`)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=20)
    return fields.get(name, [])


def developer_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """developers, create_api_key, revoke_api_key, create_webhook_endpoint, rotate_endpoint_secret,
    deliveries, replay_message, replay_failed."""
    developers = ConsoleDevelopers(deps.backends, deps.settings.grpc_deadline_seconds, deps.forget_api_key)

    async def page(
        request: Request,
        user: ConsoleUser,
        *,
        created_key: CreatedSecret | None = None,
        endpoint_secret: CreatedSecret | None = None,
        error: str = "",
        status_code: int = 200,
    ) -> Response:
        keys = await developers.keys(user.tenant_id)
        endpoints = await developers.endpoints(user.tenant_id)
        return pages.render(
            request,
            "developers/index.html",
            user=user,
            active="developers",
            status_code=status_code,
            keys=keys,
            endpoints=endpoints,
            event_types=WEBHOOK_EVENT_TYPES,
            key_scopes=[scope.value for scope in KeyScope],
            created_key=created_key,
            endpoint_secret=endpoint_secret,
            error=error,
        )

    async def developers_page(request: Request, user: CurrentUser) -> Response:
        return await page(request, user)

    async def create_api_key(request: Request, user: CurrentUser) -> Response:
        form = await form_fields(request)
        # The page's form always says which scopes were ticked; a form without the marker (an
        # older page, a script) gets every scope, as a key created without scopes does (ADR-124).
        scopes = sorted(ALL_SCOPES)
        if form.get("scopes_chosen"):
            scopes = [scope for scope in await _checked(request, "scopes") if scope in ALL_SCOPES]
            if not scopes:
                refused = "Tick at least one scope for the key."
                return await page(request, user, error=refused, status_code=422)
        created = await developers.create_key(user.tenant_id, scopes)
        await record_activity(deps, request, user, "api_key.created", "api_key", created.identifier)
        return await page(request, user, created_key=created, status_code=201)

    async def revoke_api_key(request: Request, user: CurrentUser, key_id: str) -> Response:
        revoked = await _scoped(developers.revoke_key(user.tenant_id, _object_id(key_id)))
        await record_activity(
            deps, request, user, "api_key.revoked", "api_key", revoked.key_id, revoked.prefix
        )
        return RedirectResponse("/console/developers", status_code=303)

    async def create_webhook_endpoint(request: Request, user: CurrentUser) -> Response:
        form = await form_fields(request)
        url = form.get("url", "").strip()
        description = form.get("description", "").strip()
        chosen = [value for value in await _checked(request, "event_types") if value in WEBHOOK_EVENT_TYPES]
        if (
            not url
            or len(url) > MAX_URL_CHARS
            or len(description) > MAX_DESCRIPTION_CHARS
            or not SINGLE_LINE.fullmatch(url + description)
        ):
            return await page(
                request, user, error="Give an https:// URL (and a short description).", status_code=422
            )
        try:
            created = await developers.create_endpoint(user.tenant_id, url, chosen, description)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return await page(request, user, error=remote_error(error).message, status_code=422)
        await record_activity(
            deps, request, user, "webhook_endpoint.created", "webhook_endpoint", created.identifier, url
        )
        return await page(request, user, endpoint_secret=created, status_code=201)

    async def rotate_endpoint_secret(request: Request, user: CurrentUser, endpoint_id: str) -> Response:
        rotated = await _scoped(developers.rotate_endpoint_secret(user.tenant_id, _object_id(endpoint_id)))
        await record_activity(
            deps, request, user, "webhook_endpoint.secret_rotated", "webhook_endpoint", rotated.identifier
        )
        return await page(request, user, endpoint_secret=rotated)

    async def deliveries(
        request: Request,
        user: CurrentUser,
        batch_id: FilterText = "",
        cursor: CursorText = "",
        replayed: FilterText = "",
    ) -> Response:
        timeline = await developers.timeline(
            user.tenant_id, batch_id.lower() if is_uuid(batch_id) else "", cursor
        )
        return pages.render(
            request,
            "developers/deliveries.html",
            user=user,
            active="developers",
            timeline=timeline,
            outcomes=attempts_by_outcome,
            replayed=replayed if replayed.isdigit() or MESSAGE_ID.match(replayed) else "",
            now=datetime.now(UTC),
            next_cursor=timeline.next_cursor,
        )

    async def replay_message(request: Request, user: CurrentUser, message_id: str) -> Response:
        if not MESSAGE_ID.match(message_id):
            raise NotTheTenants(message_id)
        await _scoped(developers.replay(user.tenant_id, message_id))
        await record_activity(deps, request, user, "webhook.message_replayed", "webhook_message", message_id)
        return RedirectResponse(f"{DELIVERIES_PATH}?replayed={message_id}", status_code=303)

    async def replay_failed(request: Request, user: CurrentUser) -> Response:
        since_text = (await form_fields(request)).get("since", "")
        try:
            since = datetime.fromisoformat(since_text)
        except ValueError:
            return pages.message(
                request, user, 422, "Cannot replay", "Give the time to replay from (date and time, UTC)."
            )
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        count = await developers.replay_failed_since(user.tenant_id, since)
        await record_activity(
            deps,
            request,
            user,
            "webhook.failed_replayed",
            "webhook_message",
            "",
            f"{count} since {since.isoformat()}",
        )
        return RedirectResponse(f"{DELIVERIES_PATH}?replayed={count}", status_code=303)

    return {
        "developers": developers_page,
        "create_api_key": create_api_key,
        "revoke_api_key": revoke_api_key,
        "create_webhook_endpoint": create_webhook_endpoint,
        "rotate_endpoint_secret": rotate_endpoint_secret,
        "deliveries": deliveries,
        "replay_message": replay_message,
        "replay_failed": replay_failed,
    }
