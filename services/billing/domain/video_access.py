"""The video access audit log: who tried to play, download or embed which video, how, when, result."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.errors import InvalidArgument

MODES = frozenset({"play", "download", "embed"})
# "console": a signed-in console user opened the video from the batch page (no API key).
CHANNELS = frozenset({"api", "signed_url", "console"})
# Free-text fields come from the gateway (some from a presented, maybe forged, link): bounded.
MAX_FIELD_CHARS = 200


@dataclass(frozen=True)
class VideoAccess:
    """One access attempt, allowed or refused. Ids are kept as presented (a forged link's too)."""

    tenant_id: str
    key_id: str
    client_address: str
    batch_id: str
    task_id: str
    mode: str
    via: str
    result: str
    occurred_at: datetime
    access_id: int = 0


def validated_access(access: VideoAccess) -> VideoAccess:
    """The attempt, checked: known mode and channel, a result, and no oversized field."""
    if access.via not in CHANNELS:
        raise InvalidArgument(f"via must be one of {', '.join(sorted(CHANNELS))}", field="via")
    if not access.result:
        raise InvalidArgument("result is required", field="result")
    for field in ("tenant_id", "key_id", "client_address", "batch_id", "task_id", "mode", "result"):
        if len(getattr(access, field)) > MAX_FIELD_CHARS:
            raise InvalidArgument(f"{field} is too long", field=field)
    if access.occurred_at.tzinfo is None:
        raise InvalidArgument("occurred_at must be UTC-aware", field="occurred_at")
    return access


def optional_uuid(value: str, field: str) -> uuid.UUID | None:
    """A filter id: None when empty, InvalidArgument when not a UUID."""
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID", field=field) from None
