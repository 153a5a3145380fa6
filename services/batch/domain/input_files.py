"""Input files: images a tenant uploads once and names in items by id (OpenAI's files API)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

# What a client may call a file (kept for display only; the id names it).
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class StoredInputFile:
    """An uploaded image as recorded."""

    file_id: str
    filename: str
    content_type: str
    size_bytes: int
    created_at: datetime | None = None


def new_file_id() -> str:
    """A fresh id: "file-" and 32 hex digits (see generation.FILE_ID)."""
    return f"file-{uuid.uuid4().hex}"


def display_name(filename: str) -> str:
    """The client's file name cut to something safe to show: no path, no control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if char.isprintable())
    return name[:MAX_FILENAME_CHARS] or "image"
