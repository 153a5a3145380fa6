"""The console's router: the route table's routes, each behind its guard, with their endpoints.

Each topic module (`access`, `batches`, `team`, `activity`, ...) gives a mapping of endpoint names
to endpoints; every declared route must find its endpoint and every endpoint its route, or the
application refuses to start. Failures are answered here once per kind of route: a page without a
session redirects to the sign-in page, a refused role or CSRF token is a 403 page, another
tenant's object (`NotTheTenants`) the same 404 page as an unknown one; JSON and exports answer
the API's JSON errors instead.
"""

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.console import pages
from services.gateway.console.auth import ConsoleAuth, ConsoleUser, Refused, SignInRequired, sign_in_redirect
from services.gateway.console.route_table import ROUTES, ConsoleRoute
from services.gateway.http.errors import RETRY_AFTER_SECONDS, ApiError, error_response
from services.gateway.http.rate_limits import FailedAttemptLimiter
from services.gateway.use_cases.console_reads import ConsoleReads, NotTheTenants

Endpoint = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class ConsoleDeps:
    """What the console's endpoints use: settings, backends, sessions, tenant-scoped reads and
    the per-address counter of failed sign-ins."""

    settings: Settings
    backends: Backends
    auth: ConsoleAuth
    reads: ConsoleReads
    sign_in_failures: FailedAttemptLimiter
    # Drops a revoked API key from this gateway's key cache at once.
    forget_api_key: Callable[[str], None] | None = None


EndpointFactory = Callable[[ConsoleDeps], Mapping[str, Endpoint]]

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_ROUTE_BY_KEY: dict[tuple[str, str], ConsoleRoute] = {(route.method, route.path): route for route in ROUTES}


def _answers_html(route: ConsoleRoute) -> bool:
    return route.kind in ("page", "form")


class ConsoleApiRoute(APIRoute):
    """A console route: its guard's refusals and a foreign object answered by the route's kind."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler of this route, with the console's refusals turned into answers."""
        handle = super().get_route_handler()
        declared = next(
            (
                _ROUTE_BY_KEY[(method, self.path)]
                for method in self.methods or ()
                if (method, self.path) in _ROUTE_BY_KEY
            ),
            None,
        )
        html = declared is None or _answers_html(declared)

        async def handle_console(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequired:
                if html and request.method == "GET":
                    return sign_in_redirect(request)
                if html:
                    return pages.message(
                        request, None, 401, "Signed out", "Your session has ended; sign in again."
                    )
                return error_response(ApiError(401, "unauthorized", "sign in to the console first"))
            except Refused as refusal:
                user: ConsoleUser | None = getattr(request.state, "console_user", None)
                if html:
                    return pages.message(request, user, refusal.status, "Not allowed", refusal.message)
                return error_response(ApiError(refusal.status, "forbidden", refusal.message))
            except NotTheTenants:
                if html:
                    return pages.not_found(request, getattr(request.state, "console_user", None))
                return error_response(ApiError(404, "not_found", "not found"))
            except grpc.aio.AioRpcError as error:
                # A backend out of reach: a page says so (503, Retry-After); JSON keeps the API's answer.
                if not html or error.code() not in UNREACHABLE:
                    raise
                user = getattr(request.state, "console_user", None)
                return pages.message(
                    request,
                    user,
                    503,
                    "Temporarily unavailable",
                    "A Reelbatch service is not answering; try again in a moment.",
                    **{"Retry-After": str(RETRY_AFTER_SECONDS)},
                )

        return handle_console


def _guard(auth: ConsoleAuth, route: ConsoleRoute) -> Callable[[Request], Awaitable[None]]:
    async def guard(request: Request) -> None:
        await auth.guard(request, route)

    return guard


def console_router(
    settings: Settings,
    backends: Backends,
    factories: Sequence[EndpointFactory],
    *,
    sign_in_failures: FailedAttemptLimiter,
    forget_api_key: Callable[[str], None] | None = None,
) -> APIRouter:
    """Every route of the route table with the endpoint of the same name from `factories`."""
    auth = ConsoleAuth(
        backends.billing,
        settings.grpc_deadline_seconds,
        secure_cookies=settings.public_base_url.lower().startswith("https://"),
    )
    deps = ConsoleDeps(
        settings,
        backends,
        auth,
        ConsoleReads(backends, settings.grpc_deadline_seconds),
        sign_in_failures,
        forget_api_key,
    )
    endpoints: dict[str, Endpoint] = {}
    for factory in factories:
        made = factory(deps)
        if overlap := endpoints.keys() & made.keys():
            raise RuntimeError(f"console endpoints defined twice: {sorted(overlap)}")
        endpoints.update(made)
    missing = [route.name for route in ROUTES if route.name not in endpoints]
    undeclared = sorted(endpoints.keys() - {route.name for route in ROUTES})
    if missing or undeclared:
        raise RuntimeError(
            f"console routes without endpoint: {missing}; endpoints not declared: {undeclared}"
        )
    router = APIRouter(include_in_schema=False, route_class=ConsoleApiRoute)
    for route in ROUTES:
        router.add_api_route(
            route.path,
            endpoints[route.name],
            methods=[route.method],
            name=f"console.{route.name}",
            dependencies=[Depends(_guard(auth, route))],
        )
    return router
