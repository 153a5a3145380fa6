"""`reelbatch console-invite`: an operator invites someone to a tenant's console from the shell.

It calls the running gateway's operator API (`POST /api/admin/tenants/{id}/console-invites`) with
the admin token of the settings, and prints the single-use invite link to hand over.
"""

from __future__ import annotations

import sys

from libs.config import Settings


def invite_to_console(settings: Settings, base_url: str, tenant_id: str, email: str, role: str) -> int:
    """Creates the invite; prints its link (exit 0) or the API's error (exit 1)."""
    import httpx

    try:
        response = httpx.post(
            f"{base_url.rstrip('/')}/api/admin/tenants/{tenant_id}/console-invites",
            json={"email": email, "role": role},
            headers={"Authorization": f"Bearer {settings.admin_token}"},
            timeout=30,
        )
    except httpx.HTTPError as error:
        print(f"cannot reach {base_url}: {error}", file=sys.stderr)
        return 1
    if response.status_code != 201:
        print(f"refused ({response.status_code}): {response.text}", file=sys.stderr)
        return 1
    print(response.json()["invite_url"])
    return 0
