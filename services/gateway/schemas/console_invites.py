"""The operator's console invite endpoint: request and answer."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# The console's roles (billing's vocabulary, checked there again): the one list of the gateway.
ConsoleRole = Literal["owner", "developer", "finance"]
CONSOLE_ROLES: tuple[str, ...] = get_args(ConsoleRole)


class CreateConsoleInviteRequest(BaseModel):
    """Who to invite to a tenant's console, and with which role."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, description="The invitee's email (their sign-in name).")
    role: ConsoleRole = Field(
        description="owner (everything, manages members), developer (keys, webhooks, batches) or "
        "finance (read-only money)."
    )


class ConsoleInviteCreated(BaseModel):
    """The invite: a single-use link that expires; opening it lets the invitee choose a password."""

    invite_id: str = Field(description="Identifier of the invite.")
    invite_url: str = Field(description="The link to hand to the invitee (shown once).")
