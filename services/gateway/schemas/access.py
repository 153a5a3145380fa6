"""Request and response models of API keys, operator keys and the video access audit log."""

from __future__ import annotations

from datetime import UTC
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.fields import SINGLE_LINE_TEXT_PATTERN, Instant
from services.gateway.schemas.pages import CursorPage
from services.gateway.schemas.proto_views import MessageView, ProtoView


class ApiKeyView(ProtoView):
    """One API key of a tenant. The secret is never shown again: only its first characters."""

    key_id: str = Field(description="Identifier of the key.")
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: AwareDatetime = Field(description="When the key was issued.")
    last_used_at: AwareDatetime | None = Field(description="Last use (minute resolution); null if never.")
    revoked_at: AwareDatetime | None = Field(description="When the key was revoked; null while active.")
    revoked: bool = Field(description="True once revoked (refused within seconds everywhere).")
    scopes: list[str] = Field(description="What the key may do: `batches`, `read`, `billing`.")
    expires_at: AwareDatetime | None = Field(description="When the key stops working; null: never.")

    @classmethod
    def from_proto(cls, key: billing_pb2.ApiKeyInfo) -> Self:
        """Builds the view from billing's ApiKeyInfo."""
        return cls.by_name(
            key,
            revoked=key.HasField("revoked_at"),
            scopes=list(key.scopes),
            expires_at=key.expires_at.ToDatetime(tzinfo=UTC) if key.HasField("expires_at") else None,
        )


class ApiKeyList(BaseModel):
    """Every key of the tenant, oldest first (one page: a tenant has few keys)."""

    items: list[ApiKeyView]
    next_cursor: str | None = Field(default=None, description="Always null (kept for the list shape).")


class CreateAdminKeyRequest(BaseModel):
    """An operator key to issue."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "finance"] = Field(description="`admin` (everything) or `finance` (read-only).")
    name: str = Field(
        default="",
        max_length=200,
        pattern=SINGLE_LINE_TEXT_PATTERN,
        description="What the key is for (no control characters).",
    )


class AdminKeyCreated(BaseModel):
    """A new operator key: the clear key is shown only here."""

    api_key: str = Field(description="Send as `Authorization: Bearer <key>`; it cannot be retrieved later.")
    key_id: str
    role: str


class AdminKeyView(MessageView[billing_pb2.AdminKeyInfo]):
    """One operator key (never its secret)."""

    key_id: str
    role: str
    name: str
    prefix: str
    created_at: AwareDatetime
    last_used_at: AwareDatetime | None
    revoked_at: AwareDatetime | None


class AdminKeyList(BaseModel):
    """Every operator key, oldest first."""

    items: list[AdminKeyView]
    next_cursor: str | None = Field(default=None, description="Always null (kept for the list shape).")


class VideoLink(BaseModel):
    """A short-lived signed link to a video (no credentials needed to use it until it expires)."""

    url: str = Field(description="The signed URL.")
    mode: str = Field(description="play, download or embed.")
    expires_at: AwareDatetime = Field(description="When the link stops working.")


class VideoAccessView(MessageView[billing_pb2.VideoAccess]):
    """One attempt to use a video: who, what, how, when, and the result."""

    access_id: str
    occurred_at: AwareDatetime
    tenant_id: str = Field(description="Tenant the link was issued to (as presented when forged).")
    key_id: str = Field(description="API key the link was issued to (as presented when forged).")
    client_address: str
    batch_id: str
    task_id: str
    mode: str = Field(description="play, download or embed.")
    via: str = Field(description="`api` (authenticated call) or `signed_url`.")
    result: str = Field(
        description="`allowed`, or why not: expired, bad_signature, key_revoked, not_found..."
    )


class VideoAccessPage(CursorPage[VideoAccessView]):
    """One page of the video access log, newest first."""


class CreateApiKeyRequest(BaseModel):
    """Optionally registers a known key instead of generating one (demo tenants, migrations)."""

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="The exact key to register (printable ASCII, no spaces); omit to generate one.",
        examples=["demo-key"],
    )
    scopes: list[Literal["batches", "read", "billing"]] | None = Field(
        default=None,
        max_length=3,
        description=(
            "What the key may do: `batches` (create, cancel, retry batches, quotes, files, webhooks), "
            "`read` (every GET), `billing` (budgets, keys). Omitted or empty: all three."
        ),
    )
    expires_at: Instant | None = Field(
        default=None, description="When the key stops working (RFC 3339, in the future); omit for never."
    )


class ApiKeyCreated(BaseModel):
    """A new API key: the clear key is shown only here."""

    api_key: str = Field(description="The key to send as X-API-Key; it cannot be retrieved later.")
    key_id: str = Field(description="Identifier of the key (safe to log).")
