"""The ids the webhook use cases mint, and how they read ids given by callers."""

from __future__ import annotations

import uuid


def new_message_id() -> str:
    """A Standard Webhooks message id (`msg_` + 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def uuid_or_missing(value: str) -> str:
    """The id if it is a UUID, else the nil UUID (which matches nothing): a 404, not a 500."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.UUID(int=0))
