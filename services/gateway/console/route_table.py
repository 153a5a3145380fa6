"""Every route of the customer console, declared once with the roles that may use it.

The router registers exactly these routes (`console.router`), the guard admits exactly these
roles, and the role matrix and cross-tenant matrix tests are generated from this table: a route
that is not declared here is not served, and a declared one cannot escape the tests.

`roles` empty means public (sign-in, invite links). `tenant_object` is the path parameter of a
tenant-owned object, derived from the path (another tenant's is a 404, like an unknown one).
`form` marks a state change (POST): it must carry the session's CSRF token. `nav` puts a page in
the top bar.

Adding a page: declare its `ConsoleRoute` here, write its endpoint in a topic module whose factory
returns `{name: endpoint}` (see `console/batches.py`), and list that factory in
`CONSOLE_ENDPOINTS` of `services/gateway/entrypoints/app.py`. The matrices then cover it; a path
parameter other than batch_id, invite_id, user_id, task_id or token needs its fresh-object maker
in `OBJECT_MAKERS` of `tests/security/test_console_matrix.py` (a test fails until it has one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from services.gateway.schemas.console_invites import CONSOLE_ROLES

OWNER, DEVELOPER, FINANCE = CONSOLE_ROLES
ALL_ROLES = frozenset(CONSOLE_ROLES)
OWNERS = frozenset({OWNER})
MONEY_READERS = frozenset({OWNER, FINANCE})
DEVELOPERS = frozenset({OWNER, DEVELOPER})
PUBLIC: frozenset[str] = frozenset()

# What a route answers: an HTML page, a file download, JSON for the page's script, or a form post
# (which redirects or re-renders).
RouteKind = Literal["page", "export", "json", "form"]

# Path parameters that do not name a tenant-owned object: an invite link's token (the link is the
# credential) and a statement's month. Every other parameter does, and the first one in the path is
# the object checked against the session's tenant.
UNOWNED_PARAMETERS = frozenset({"token", "month"})
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ConsoleRoute:
    """One console route: its endpoint's name, method, path, kind and who may use it."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    kind: RouteKind
    roles: frozenset[str]
    nav: str = ""

    @property
    def tenant_object(self) -> str:
        """The path parameter naming a tenant-owned object: the first one not in `UNOWNED_PARAMETERS`."""
        owned = [name for name in _PATH_PARAMETER.findall(self.path) if name not in UNOWNED_PARAMETERS]
        return owned[0] if owned else ""

    @property
    def public(self) -> bool:
        """True for routes used before signing in."""
        return not self.roles


ROUTES: tuple[ConsoleRoute, ...] = (
    # Signing in and out, invite links.
    ConsoleRoute("login_form", "GET", "/console/login", "page", PUBLIC),
    ConsoleRoute("login", "POST", "/console/login", "form", PUBLIC),
    ConsoleRoute("invite_form", "GET", "/console/invites/{token}", "page", PUBLIC),
    ConsoleRoute("accept_invite", "POST", "/console/invites/{token}", "form", PUBLIC),
    ConsoleRoute("logout_form", "GET", "/console/logout", "page", ALL_ROLES),
    ConsoleRoute("logout", "POST", "/console/logout", "form", ALL_ROLES),
    # Home: the overview (credits, this month's money, open batches live, the last failures).
    ConsoleRoute("home", "GET", "/console", "page", ALL_ROLES, nav="Overview"),
    # Batches.
    ConsoleRoute("batches", "GET", "/console/batches", "page", ALL_ROLES, nav="Batches"),
    ConsoleRoute("batch", "GET", "/console/batches/{batch_id}", "page", ALL_ROLES),
    ConsoleRoute("batch_progress", "GET", "/console/batches/{batch_id}/progress", "json", ALL_ROLES),
    # The batch's results (succeeded items) and errors (failed, cancelled) files, as the API's.
    ConsoleRoute("batch_results_csv", "GET", "/console/batches/{batch_id}/results.csv", "export", ALL_ROLES),
    ConsoleRoute(
        "batch_results_jsonl", "GET", "/console/batches/{batch_id}/results.jsonl", "export", ALL_ROLES
    ),
    ConsoleRoute("batch_errors_csv", "GET", "/console/batches/{batch_id}/errors.csv", "export", ALL_ROLES),
    ConsoleRoute(
        "batch_errors_jsonl", "GET", "/console/batches/{batch_id}/errors.jsonl", "export", ALL_ROLES
    ),
    ConsoleRoute(
        "task_video", "GET", "/console/batches/{batch_id}/tasks/{task_id}/video", "export", ALL_ROLES
    ),
    # Usage and books (money: owners and finance).
    ConsoleRoute("usage", "GET", "/console/usage", "page", MONEY_READERS, nav="Usage"),
    ConsoleRoute("usage_csv", "GET", "/console/usage.csv", "export", MONEY_READERS),
    ConsoleRoute("books", "GET", "/console/books", "page", MONEY_READERS, nav="Books"),
    ConsoleRoute("books_csv", "GET", "/console/books.csv", "export", MONEY_READERS),
    ConsoleRoute("statement_pick", "GET", "/console/books/statements", "page", MONEY_READERS),
    ConsoleRoute("statement", "GET", "/console/books/statements/{month}", "page", MONEY_READERS),
    ConsoleRoute("statement_csv", "GET", "/console/books/statements/{month}/csv", "export", MONEY_READERS),
    ConsoleRoute("statement_print", "GET", "/console/books/statements/{month}/print", "page", MONEY_READERS),
    # Credits: packs, buying (finance only when the owner allows it), receipts, the owner's setting.
    ConsoleRoute("credits", "GET", "/console/credits", "page", MONEY_READERS, nav="Credits"),
    ConsoleRoute("buy_credits", "POST", "/console/credits/checkout", "form", MONEY_READERS),
    ConsoleRoute("receipt", "GET", "/console/credits/receipts/{payment_id}", "page", MONEY_READERS),
    ConsoleRoute("credit_settings", "POST", "/console/credits/settings", "form", OWNERS),
    # The tenant's monthly budget (issue 29): shown to money readers, changed by owners only.
    ConsoleRoute("set_budget", "POST", "/console/credits/budget", "form", OWNERS),
    # Spend alert thresholds (issue 29, ADR-125): changed by owners only, as budgets are.
    ConsoleRoute("set_alerts", "POST", "/console/credits/alerts", "form", OWNERS),
    # Automatic top-up (issue 29, ADR-135): changed by owners only, as budgets are.
    ConsoleRoute("set_auto_top_up", "POST", "/console/credits/auto-top-up", "form", OWNERS),
    # Developers: API keys, webhook endpoints, the delivery log and replays.
    ConsoleRoute("developers", "GET", "/console/developers", "page", DEVELOPERS, nav="Developers"),
    ConsoleRoute("create_api_key", "POST", "/console/developers/keys", "form", DEVELOPERS),
    ConsoleRoute("revoke_api_key", "POST", "/console/developers/keys/{key_id}/revoke", "form", DEVELOPERS),
    ConsoleRoute("create_webhook_endpoint", "POST", "/console/developers/endpoints", "form", DEVELOPERS),
    ConsoleRoute(
        "rotate_endpoint_secret",
        "POST",
        "/console/developers/endpoints/{endpoint_id}/rotate",
        "form",
        DEVELOPERS,
    ),
    ConsoleRoute("deliveries", "GET", "/console/developers/deliveries", "page", DEVELOPERS),
    ConsoleRoute("replay_failed", "POST", "/console/developers/deliveries/replay-failed", "form", DEVELOPERS),
    ConsoleRoute(
        "replay_message", "POST", "/console/developers/deliveries/{message_id}/replay", "form", DEVELOPERS
    ),
    # Team.
    ConsoleRoute("team", "GET", "/console/team", "page", ALL_ROLES, nav="Team"),
    ConsoleRoute("invite_member", "POST", "/console/team/invites", "form", OWNERS),
    ConsoleRoute("revoke_invite", "POST", "/console/team/invites/{invite_id}/revoke", "form", OWNERS),
    ConsoleRoute("remove_member", "POST", "/console/team/members/{user_id}/remove", "form", OWNERS),
    ConsoleRoute("change_role", "POST", "/console/team/members/{user_id}/role", "form", OWNERS),
    # Activity (the tenant's audit log).
    ConsoleRoute("activity", "GET", "/console/activity", "page", MONEY_READERS, nav="Activity"),
    ConsoleRoute("activity_csv", "GET", "/console/activity.csv", "export", MONEY_READERS),
)


def route_named(name: str) -> ConsoleRoute:
    """The declared route of an endpoint name (KeyError for an undeclared one)."""
    for route in ROUTES:
        if route.name == name:
            return route
    raise KeyError(name)
