"""Inviting someone to a tenant's console: one home for the operator API, the admin dashboard's
button and owners on the console's Team page.

The invite link is `<public URL>/console/invites/<token>`: single-use and expiring (billing keeps
the token's hash, its expiry and whether it was used). No e-mail is sent: the link is shown once
to copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

INVITE_PATH = "/console/invites/"
OPERATOR = billing_pb2.ConsoleActor(kind="operator", label="operator")


@dataclass(frozen=True)
class CreatedInvite:
    """An invite's id and the link to hand to the invitee."""

    invite_id: str
    invite_url: str


def invite_url(public_base_url: str, token: str) -> str:
    """The link an invitee opens."""
    return f"{public_base_url.rstrip('/')}{INVITE_PATH}{token}"


async def create_console_invite(
    billing: billing_pb2_grpc.BillingServiceAsyncStub,
    deadline_seconds: float,
    public_base_url: str,
    *,
    tenant_id: str,
    email: str,
    role: str,
    actor: billing_pb2.ConsoleActor,
) -> CreatedInvite:
    """Asks billing for an invite (it checks the role, the email and that the actor may invite)."""
    created = await billing.CreateConsoleInvite(
        billing_pb2.CreateConsoleInviteRequest(tenant_id=tenant_id, email=email, role=role, actor=actor),
        timeout=deadline_seconds,
    )
    return CreatedInvite(created.invite.invite_id, invite_url(public_base_url, created.token))
