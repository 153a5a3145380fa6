"""JSONL request bodies and answers of the batch API, for the batch I/O tests (e2e and scale)."""

from __future__ import annotations

import json
from typing import Any

import httpx

CREATE = "/api/enterprise/video-batch"
JSONL = {"Content-Type": "application/jsonl"}
# Three items, the second failing on the simulated provider (`#fail`): two videos, cat and fox.
CAT_DOG_FOX = [
    {"prompt": "a cat", "model": "sora-2", "custom_id": "cat"},
    {"prompt": "a dog #fail", "model": "sora-2", "custom_id": "dog"},
    {"prompt": "a fox", "model": "sora-2", "custom_id": "fox"},
]


def jsonl_body(lines: list[dict[str, Any]]) -> bytes:
    """One JSON document per line."""
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def json_lines(response: httpx.Response) -> list[dict[str, Any]]:
    """The documents of a 200 JSONL answer."""
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]
