"""Console endpoints of signing in and out and of invite links.

Sign-in failures count twice, both shared by every gateway replica: per client address in a
token bucket billing keeps (`FailedAttemptLimiter`, as the admin sign-in, ADR-128) and per email
in billing's lock-out table (ADR-076).
"""

import secrets
from typing import Annotated

import grpc
from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from reelbatch.proto.billing.v1 import billing_pb2

from libs.rpc.errors import remote_error
from services.gateway.console import pages
from services.gateway.console.auth import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    LOGIN_PATH,
    SESSION_COOKIE,
    CurrentUser,
    form_fields,
    safe_next,
    tokens_match,
)
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.admin_sessions import same_origin
from services.gateway.http.rate_limits import client_address

HOME = "/console"
MAX_FIELD_CHARS = 1024


def access_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """login_form, login, logout_form, logout, invite_form, accept_invite, home."""
    billing = deps.backends.billing
    deadline = deps.settings.grpc_deadline_seconds
    auth = deps.auth

    def login_page(
        request: Request, next_path: str, error: str | None, status_code: int = 200
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = pages.render(
            request,
            "login.html",
            user=None,
            status_code=status_code,
            next_path=next_path,
            error=error,
            login_token=token,
        )
        auth.set_login_token(response, token)
        return response

    async def login_form(
        request: Request, next_path: Annotated[str, Query(alias="next", max_length=2048)] = ""
    ) -> Response:
        if await auth.user_of(request) is not None:
            return RedirectResponse(safe_next(next_path), status_code=303)
        return login_page(request, safe_next(next_path), None)

    async def login(request: Request) -> Response:
        form = await form_fields(request)
        target = safe_next(form.get("next", ""))
        if not same_origin(request) or not tokens_match(
            form.get("login_token", ""), request.cookies.get(LOGIN_COOKIE, "")
        ):
            return login_page(
                request, target, "The form expired or was sent from another site; try again.", 403
            )
        address = client_address(request.scope.get("client"))
        wait = await deps.sign_in_failures.retry_after(address)
        if wait > 0:
            return _too_many(
                login_page(request, target, "Too many failed sign-ins; try again later.", 429), wait
            )
        try:
            issued = await billing.SignInConsole(
                billing_pb2.SignInConsoleRequest(
                    email=form.get("email", "")[:MAX_FIELD_CHARS],
                    password=form.get("password", "")[:MAX_FIELD_CHARS],
                    client_address=address,
                ),
                timeout=deadline,
            )
        except grpc.aio.AioRpcError as error:
            refusal = remote_error(error)
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                await deps.sign_in_failures.record_failure(address)
                return login_page(request, target, "Wrong email or password.", 401)
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                seconds = float(refusal.details.get("retry_after_seconds", "60"))
                page = login_page(
                    request, target, "Too many failed sign-ins for this account; try again later.", 429
                )
                return _too_many(page, seconds)
            raise
        response = RedirectResponse(target, status_code=303)
        auth.set_session(response, issued.session_token, deps.settings.console_session_max_seconds)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    async def logout_form(request: Request, user: CurrentUser) -> Response:
        return pages.render(request, "logout.html", user=user)

    async def logout(request: Request) -> Response:
        form = await form_fields(request)
        await billing.SignOutConsole(
            billing_pb2.SignOutConsoleRequest(
                session_token=request.cookies.get(SESSION_COOKIE, ""),
                all_sessions=form.get("everywhere", "") == "1",
            ),
            timeout=deadline,
        )
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        auth.clear_session(response)
        return response

    async def invite_page(
        request: Request, token: str, error: str | None, status_code: int = 200
    ) -> Response:
        try:
            invite = await billing.GetConsoleInvite(
                billing_pb2.GetConsoleInviteRequest(token=token[:MAX_FIELD_CHARS]), timeout=deadline
            )
        except grpc.aio.AioRpcError as failure:
            if failure.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return pages.message(
                    request,
                    None,
                    404,
                    "Invite not valid",
                    "This invite link was used already, withdrawn or expired.",
                )
            raise
        return pages.render(
            request, "invite.html", user=None, status_code=status_code, invite=invite, error=error
        )

    async def invite_form(request: Request, token: str) -> Response:
        return await invite_page(request, token, None)

    async def accept_invite(request: Request, token: str) -> Response:
        form = await form_fields(request)
        if not same_origin(request):
            return await invite_page(request, token, "The form was sent from another site.", 403)
        password = form.get("password", "")
        if "password_confirmation" in form and form["password_confirmation"] != password:
            return await invite_page(request, token, "The two passwords differ.", 422)
        try:
            issued = await billing.AcceptConsoleInvite(
                billing_pb2.AcceptConsoleInviteRequest(
                    token=token[:MAX_FIELD_CHARS],
                    password=password[:MAX_FIELD_CHARS],
                    client_address=client_address(request.scope.get("client")),
                ),
                timeout=deadline,
            )
        except grpc.aio.AioRpcError as failure:
            if failure.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return await invite_page(request, token, remote_error(failure).message, 422)
            if failure.code() == grpc.StatusCode.ALREADY_EXISTS:
                return await invite_page(
                    request, token, "A console user with this email exists already.", 409
                )
            if failure.code() == grpc.StatusCode.NOT_FOUND:
                return await invite_page(request, token, None)
            raise
        response = RedirectResponse(HOME, status_code=303)
        auth.set_session(response, issued.session_token, deps.settings.console_session_max_seconds)
        return response

    return {
        "login_form": login_form,
        "login": login,
        "logout_form": logout_form,
        "logout": logout,
        "invite_form": invite_form,
        "accept_invite": accept_invite,
    }


def _too_many(response: HTMLResponse, seconds: float) -> HTMLResponse:
    response.headers["Retry-After"] = str(max(1, int(seconds + 0.999)))
    return response
