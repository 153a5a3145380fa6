"""JSONL request bodies and answers of the batch API, for the batch I/O tests (e2e and scale)."""

from __future__ import annotations

import json
from typing import Any

import httpx

CREATE = "/api/enterprise/video-batch"
JSONL = {"Content-Type": "application/jsonl"}


def jsonl_body(lines: list[dict[str, Any]]) -> bytes:
    """One JSON document per line."""
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def json_lines(response: httpx.Response) -> list[dict[str, Any]]:
    """The documents of a 200 JSONL answer."""
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]
