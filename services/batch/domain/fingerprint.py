"""The fingerprint of a create request: what "the same body" means for idempotency."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import orjson

from services.batch.domain.batch import BatchItem, Metadata
from services.batch.domain.generation import NO_SETTINGS


def _item_encoding(item: BatchItem) -> dict[str, object]:
    encoded: dict[str, object] = {"model": item.model, "prompt": item.prompt}
    # Optional fields enter an item's encoding only when given (older fingerprints stay valid).
    if item.duration_seconds:
        encoded["duration_seconds"] = item.duration_seconds
    if item.custom_id:
        encoded["custom_id"] = item.custom_id
    if item.metadata:
        encoded["metadata"] = dict(item.metadata)
    if item.settings is not NO_SETTINGS and not item.settings.is_empty:
        # orjson encodes the dataclass (every field, defaults included).
        encoded["settings"] = item.settings
    return encoded


def request_fingerprint(
    items: Sequence[BatchItem],
    webhook_url: str,
    *,
    deadline_seconds: int = 0,
    retry_of: str = "",
    name: str = "",
    metadata: Metadata = (),
) -> str:
    """sha256 (hex) of a canonical encoding of the items, in order, and the other request fields.

    JSON with sorted keys and no whitespace makes the encoding independent of how a client
    formatted its request; the item order matters because tasks are addressed by index. Fields
    added later (deadline, retried batch) enter the encoding only when set, so the fingerprints
    of requests without them stay what they were.
    """
    body: dict[str, object] = {
        # A duration enters an item's encoding only when given, like the optional fields below.
        "items": [
            {"model": item.model, "prompt": item.prompt}
            if not (
                item.duration_seconds or item.custom_id or item.metadata or item.settings is not NO_SETTINGS
            )
            else _item_encoding(item)
            for item in items
        ],
        "webhook_url": webhook_url,
    }
    if deadline_seconds:
        body["deadline_seconds"] = deadline_seconds
    if retry_of:
        body["retry_of"] = retry_of
    if name:
        body["name"] = name
    if metadata:
        body["metadata"] = dict(metadata)
    # orjson with sorted keys writes exactly the bytes of json.dumps(sort_keys=True, separators=
    # (",", ":"), ensure_ascii=False) in UTF-8 (the encoding fingerprints were first computed with;
    # a unit test holds them equal), five times faster on a 10,000-item batch.
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
