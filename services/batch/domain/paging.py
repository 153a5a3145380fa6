"""Opaque page cursors: what they encode is ours to change, so clients only echo them back."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from libs.errors import InvalidArgument
from services.batch.domain.errors import InvalidCursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """0 means the default; more than the maximum is trimmed to it."""
    if requested < 0:
        raise InvalidArgument("limit must not be negative", field="limit")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _encode(payload: dict[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, kind: str) -> dict[str, object]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("cursor is not valid", field="cursor") from None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise InvalidCursor("cursor is not valid", field="cursor")
    return payload


def _moment_and_id(payload: dict[str, object]) -> tuple[datetime, uuid.UUID]:
    """The aware time ("t") and the row id ("i") a keyset cursor resumes after."""
    try:
        moment = datetime.fromisoformat(str(payload["t"]))
        row_id = uuid.UUID(str(payload["i"]))
    except (KeyError, ValueError):
        raise InvalidCursor("cursor is not valid", field="cursor") from None
    if moment.tzinfo is None:
        raise InvalidCursor("cursor is not valid", field="cursor")
    return moment, row_id


@dataclass(frozen=True)
class BatchCursor:
    """Position after the last batch of a page (newest first)."""

    created_at: datetime
    batch_id: uuid.UUID

    def encode(self) -> str:
        return _encode({"k": "b", "t": self.created_at.isoformat(), "i": str(self.batch_id)})

    @classmethod
    def decode(cls, cursor: str) -> BatchCursor:
        return cls(*_moment_and_id(_decode(cursor, "b")))


@dataclass(frozen=True)
class TaskCursor:
    """Position after the last task of a page (batch order)."""

    batch_index: int

    def encode(self) -> str:
        return _encode({"k": "t", "n": self.batch_index})

    @classmethod
    def decode(cls, cursor: str) -> TaskCursor:
        index = _decode(cursor, "t").get("n")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise InvalidCursor("cursor is not valid", field="cursor")
        return cls(index)


@dataclass(frozen=True)
class JobCursor:
    """Position after the last provider job of a page (task order, then submission)."""

    batch_index: int
    submitted_at: datetime
    row_id: uuid.UUID

    def encode(self) -> str:
        return _encode(
            {"k": "j", "n": self.batch_index, "t": self.submitted_at.isoformat(), "i": str(self.row_id)}
        )

    @classmethod
    def decode(cls, cursor: str) -> JobCursor:
        payload = _decode(cursor, "j")
        index = payload.get("n")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**31:
            raise InvalidCursor("cursor is not valid", field="cursor")
        return cls(index, *_moment_and_id(payload))
