"""Who is signed in to the console: the session cookie, resolved by billing, and the guard every
console route passes (sign-in, role, CSRF).

The cookie holds a random session token (billing keeps its hash, the idle and absolute expiry,
and the session's CSRF token). It is HttpOnly, SameSite=Lax, path /console, and Secure when the
public URL is https. Every form post carries the session's synchronizer CSRF token and must come
from this origin; the sign-in form, used before any session exists, carries a token tied to a
short-lived pre-session cookie instead (double submit).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import parse_qs, quote

import grpc
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from services.gateway.console.route_table import ConsoleRoute
from services.gateway.http.admin_sessions import same_origin
from services.gateway.http.errors import ApiError

SESSION_COOKIE = "reelbatch_console"
LOGIN_COOKIE = "reelbatch_console_login"
COOKIE_PATH = "/console"
LOGIN_PATH = "/console/login"
LOGIN_COOKIE_SECONDS = 3600
MAX_FORM_FIELDS = 20


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in person: their tenant, id, email, role, and their session's CSRF token."""

    tenant_id: str
    user_id: str
    email: str
    role: str
    csrf_token: str

    @classmethod
    def from_session(cls, session: billing_pb2.ConsoleSessionInfo) -> ConsoleUser:
        """Built from billing's answer for a session."""
        user = session.user
        return cls(user.tenant_id, user.user_id, user.email, user.role, session.csrf_token)

    def actor(self) -> billing_pb2.ConsoleActor:
        """This user as the actor of a change (billing checks they may make it)."""
        return billing_pb2.ConsoleActor(kind="user", id=self.user_id, label=self.email)


class SignInRequired(Exception):
    """A page asked for without a valid session: answered with the sign-in redirect."""


class Refused(Exception):
    """A signed-in user whose role may not use the route, or a form without a valid CSRF token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tokens_match(presented: str, expected: str) -> bool:
    """Constant-time comparison of two tokens (an empty expected token matches nothing)."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


async def form_fields(request: Request) -> dict[str, str]:
    """A small urlencoded form's fields (first value of each), parsed once per request."""
    cached: dict[str, str] | None = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    fields: dict[str, str] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type == "application/x-www-form-urlencoded":
        parsed = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
        fields = {name: values[0] for name, values in parsed.items() if values}
    request.state.console_form = fields
    return fields


async def signed_in_user(request: Request) -> ConsoleUser:
    """The user the guard admitted (only for routes with roles; the guard runs first)."""
    user: ConsoleUser = request.state.console_user
    return user


# An endpoint's parameter `user: CurrentUser` is the signed-in user of its request.
CurrentUser = Annotated[ConsoleUser, Depends(signed_in_user)]


def sign_in_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, which comes back here once signed in."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)


def safe_next(path: str) -> str:
    """Only local console paths: never an open redirect to another site."""
    if path.startswith("/console") and not path.startswith("//") and "\\" not in path:
        return path
    return "/console"


class ConsoleAuth:
    """Resolves session cookies through billing and sets and clears them."""

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingServiceAsyncStub,
        deadline_seconds: float,
        *,
        secure_cookies: bool,
    ) -> None:
        self._billing = billing
        self._deadline = deadline_seconds
        self.secure_cookies = secure_cookies

    async def user_of(self, request: Request) -> ConsoleUser | None:
        """The user of the request's session cookie; None when absent, ended or expired."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        try:
            session = await self._billing.AuthenticateConsoleSession(
                billing_pb2.AuthenticateConsoleSessionRequest(session_token=token), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return ConsoleUser.from_session(session)

    async def guard(self, request: Request, route: ConsoleRoute) -> None:
        """Admits the request to `route`: signed in (else SignInRequired), with an allowed role
        and, on a form post, this origin and the session's CSRF token (else Refused)."""
        if route.public:
            return
        user = await self.user_of(request)
        if user is None:
            raise SignInRequired
        request.state.console_user = user
        if user.role not in route.roles:
            raise Refused(403, "Your role does not give access to this page.")
        if route.method == "POST":
            presented = (await form_fields(request)).get("csrf_token", "")
            if not same_origin(request) or not tokens_match(presented, user.csrf_token):
                raise Refused(
                    403, "This form has expired or was sent from another site; reload the page and try again."
                )

    def set_session(self, response: Response, token: str, max_age: int) -> None:
        """Stores a new session's token in the browser."""
        self._set_cookie(response, SESSION_COOKIE, token, max_age, "lax")

    def clear_session(self, response: Response) -> None:
        """Forgets the session cookie."""
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=self.secure_cookies
        )

    def set_login_token(self, response: Response, token: str) -> None:
        """The pre-session cookie the sign-in form's token must match."""
        self._set_cookie(response, LOGIN_COOKIE, token, LOGIN_COOKIE_SECONDS, "strict")

    def _set_cookie(
        self, response: Response, name: str, token: str, max_age: int, samesite: Literal["lax", "strict"]
    ) -> None:
        # Every console cookie: scoped to the console, out of scripts' reach, HTTPS-only when served so.
        response.set_cookie(
            name,
            token,
            max_age=max_age,
            path=COOKIE_PATH,
            httponly=True,
            samesite=samesite,
            secure=self.secure_cookies,
        )


def locked_out(retry_after_seconds: float) -> ApiError:
    """The 429 of a locked account or a blocked address (pages render it; JSON callers get it)."""
    wait = max(1, math.ceil(retry_after_seconds))
    return ApiError(
        429,
        "rate_limited",
        "too many failed sign-ins; try again later",
        extra={"retry_after_seconds": wait},
        headers={"Retry-After": str(wait)},
    )
