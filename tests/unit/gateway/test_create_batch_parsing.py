"""The create body's fast check agrees with the model: it accepts only what the model accepts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.gateway.schemas import BatchColumns, BatchLimits, CreateBatchRequest, plainly_valid_batch

LIMITS = BatchLimits(max_batch_items=5, max_prompt_chars=20)
OK = {"prompt": "a cat", "model": "sora-2"}


def _model_columns(document: Any) -> BatchColumns | None:
    try:
        return BatchColumns.of(CreateBatchRequest.model_validate_json(orjson.dumps(document), context=LIMITS))
    except ValidationError:
        return None


VALID = [
    {"items": [OK]},
    {"items": [OK, {"prompt": "tab\tand\nnewline é 😀", "model": "veo-3", "duration_seconds": 6}]},
    {"items": [{**OK, "duration_seconds": None}], "webhook_url": None, "deadline_seconds": None},
    {"items": [OK] * 5, "webhook_url": "https://customer.example/hook", "deadline_seconds": 604800},
    {"items": [{"prompt": "x" * 20, "model": "m" * 200, "duration_seconds": 3600}]},
]

# Each is refused by the model, or accepted by it only after a conversion the fast check leaves to it.
NOT_PLAIN = [
    [],
    {},
    {"items": []},
    {"items": [OK] * 6},
    {"items": OK},
    {"items": [OK], "extra": 1},
    {"items": [{**OK, "extra": 1}]},
    {"items": [{"prompt": "a"}]},
    {"items": [{"model": "sora-2"}]},
    {"items": [[1, 2]]},
    {"items": [{**OK, "prompt": 5}]},
    {"items": [{**OK, "prompt": None}]},
    {"items": [{**OK, "model": 5}]},
    {"items": [{**OK, "prompt": "   "}]},
    {"items": [{**OK, "prompt": ""}]},
    {"items": [{**OK, "prompt": "x" * 21}]},
    {"items": [{**OK, "prompt": "carriage\rreturn"}]},
    {"items": [{**OK, "prompt": "nul\x00"}]},
    {"items": [{**OK, "prompt": "c1\x85"}]},
    {"items": [{**OK, "model": ""}]},
    {"items": [{**OK, "model": " "}]},
    {"items": [{**OK, "model": "m" * 201}]},
    {"items": [{**OK, "duration_seconds": 0}]},
    {"items": [{**OK, "duration_seconds": 3601}]},
    {"items": [{**OK, "duration_seconds": True}]},
    {"items": [{**OK, "duration_seconds": 6.0}]},
    {"items": [{**OK, "duration_seconds": "6"}]},
    {"items": [OK], "webhook_url": "ftp://example.com"},
    {"items": [OK], "webhook_url": "https://exa mple.com"},
    {"items": [OK], "webhook_url": 5},
    {"items": [OK], "deadline_seconds": 0},
    {"items": [OK], "deadline_seconds": 604801},
    {"items": [OK], "deadline_seconds": False},
    {"items": [OK], "deadline_seconds": 60.0},
]


@pytest.mark.parametrize("document", VALID)
def test_a_plainly_valid_body_gives_the_columns_the_model_gives(document: Any) -> None:
    plain = plainly_valid_batch(document, LIMITS)
    assert plain is not None
    assert plain == _model_columns(document)


@pytest.mark.parametrize("document", NOT_PLAIN)
def test_anything_else_is_left_to_the_model(document: Any) -> None:
    assert plainly_valid_batch(document, LIMITS) is None
