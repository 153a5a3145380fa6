"""Keyset pages, newest first, over a table with `created_at` and `id` (SQLAlchemy Core).

The cursor is opaque to clients: base64 of the last row's `created_at|id`. Endpoints and
messages page the same way, so the rule lives here once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, Table, and_, or_

from libs.errors import InvalidArgument

_Key = TypeVar("_Key")


def encode_cursor(created_at: datetime, key: str) -> str:
    """The cursor of the page that continues after the row (`created_at`, `key`)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str, key_of: Callable[[str], _Key]) -> tuple[datetime, _Key] | None:
    """The position a page continues after (None for the first page), its key parsed by `key_of`;
    InvalidArgument when the cursor is none of ours (clients echo it, so it may be anything)."""
    if not cursor:
        return None
    try:
        moment, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at, parsed_key = datetime.fromisoformat(moment), key_of(key)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("cursor is not valid", field="cursor") from None
    if created_at.tzinfo is None:
        raise InvalidArgument("cursor is not valid", field="cursor")
    return created_at, parsed_key


def newest_first_page(
    query: Select[Any], table: Table, cursor: str, key_of: Callable[[str], object], limit: int
) -> Select[Any]:
    """`query` restricted to the rows after `cursor`, newest first, one row more than `limit`
    (that extra row says whether a next page exists)."""
    after = decode_cursor(cursor, key_of)
    if after is not None:
        moment, key = after
        query = query.where(
            or_(table.c.created_at < moment, and_(table.c.created_at == moment, table.c.id < key))
        )
    return query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
