"""Rendering of console pages: the admin pages' Jinja2 environment and security headers, the
console's frame (navigation for the user's role, sign-out form with the CSRF token).

Templates live in services/gateway/templates/console/ and extend the same layout and stylesheet
as the admin pages. The only script is the console's own file under /console/static (no inline
script, no external asset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.gateway.admin_ui.pages import SECURITY_HEADERS, TEMPLATES
from services.gateway.admin_ui.views import Link
from services.gateway.console.auth import ConsoleUser
from services.gateway.console.route_table import ROUTES

STATIC_DIR = Path(__file__).parent / "static"


def static_files() -> StaticFiles:
    """The console's script (mounted at /console/static)."""
    return StaticFiles(directory=STATIC_DIR)


def navigation(user: ConsoleUser | None, active: str) -> list[Link]:
    """The top bar: the pages with a `nav` label the user's role may open."""
    if user is None:
        return []
    return [
        Link(route.path, route.nav, route.name == active, route.name)
        for route in ROUTES
        if route.nav and user.role in route.roles
    ]


def render(
    request: Request,
    template: str,
    *,
    user: ConsoleUser | None,
    active: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    """`template` (under templates/console/) inside the console frame."""
    context = {
        "user": user,
        "csrf_token": user.csrf_token if user is not None else None,
        "navigation": navigation(user, active),
        **values,
    }
    return TEMPLATES.TemplateResponse(
        request,
        f"console/{template}",
        context,
        status_code=status_code,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def message(
    request: Request, user: ConsoleUser | None, status_code: int, title: str, text: str, **headers: str
) -> HTMLResponse:
    """A page that only says something: not found (404), not allowed (403), too many attempts (429)."""
    return render(
        request, "message.html", user=user, status_code=status_code, headers=headers, title=title, text=text
    )


def not_found(request: Request, user: ConsoleUser | None, what: str = "page") -> HTMLResponse:
    """The console's 404: the same for another tenant's object as for one that does not exist."""
    return message(request, user, 404, "Not found", f"No such {what}.")
