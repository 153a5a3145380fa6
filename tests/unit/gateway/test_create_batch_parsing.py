"""The create body's fast shape check agrees with the model: it accepts only what the model accepts.

Both check the shape alone: a body that breaks a rule of the batch (an empty prompt, a duration out
of range) is well-shaped and goes to the batch service, which names every violation.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.gateway.schemas.batches import BatchColumns, CreateBatchRequest, plainly_valid_batch

OK = {"prompt": "a cat", "model": "sora-2"}


def _model_columns(document: Any) -> BatchColumns | None:
    try:
        return BatchColumns.of(CreateBatchRequest.model_validate_json(orjson.dumps(document)))
    except ValidationError:
        return None


VALID = [
    {"items": [OK]},
    {"items": [OK, {"prompt": "tab\tand\nnewline é 😀", "model": "veo-3", "duration_seconds": 6}]},
    {"items": [{**OK, "duration_seconds": None}], "webhook_url": None, "deadline_seconds": None},
    {"items": [OK] * 5, "webhook_url": "https://customer.example/hook", "deadline_seconds": 604800},
    {"items": [{"prompt": "x" * 20, "model": "m" * 200, "duration_seconds": 3600}]},
    # Well-shaped bodies that break the batch's rules: the batch service refuses them.
    {"items": []},
    {"items": [OK] * 10_001},
    {"items": [{**OK, "prompt": "   "}, {**OK, "prompt": ""}, {**OK, "prompt": "carriage\rreturn"}]},
    {"items": [{**OK, "prompt": "nul\x00"}, {**OK, "prompt": "c1\x85"}, {**OK, "model": "m" * 201}]},
    {
        "items": [
            {**OK, "duration_seconds": 0},
            {**OK, "duration_seconds": -1},
            {**OK, "duration_seconds": 2**31 - 1},
        ]
    },
    {"items": [OK], "webhook_url": "ftp://example.com", "deadline_seconds": 0},
    {"items": [OK], "webhook_url": "https://exa mple.com", "deadline_seconds": -(2**31)},
]

# Each is refused by the model, or accepted by it only after a conversion the fast check leaves to it.
NOT_PLAIN = [
    [],
    {},
    {"items": OK},
    {"items": [OK], "extra": 1},
    {"items": [{**OK, "extra": 1}]},
    {"items": [{"prompt": "a"}]},
    {"items": [{"model": "sora-2"}]},
    {"items": [[1, 2]]},
    {"items": [{**OK, "prompt": 5}]},
    {"items": [{**OK, "prompt": None}]},
    {"items": [{**OK, "model": 5}]},
    {"items": [{**OK, "duration_seconds": True}]},
    {"items": [{**OK, "duration_seconds": 6.0}]},
    {"items": [{**OK, "duration_seconds": "6"}]},
    {"items": [{**OK, "duration_seconds": 2**31}]},
    {"items": [{**OK, "duration_seconds": []}]},  # unhashable: must not reach a set
    {"items": [{**OK, "duration_seconds": {}}]},
    {"items": [OK], "webhook_url": 5},
    {"items": [OK], "deadline_seconds": False},
    {"items": [OK], "deadline_seconds": 60.0},
    {"items": [OK], "deadline_seconds": -(2**31) - 1},
]


@pytest.mark.parametrize("document", VALID)
def test_a_plainly_valid_body_gives_the_columns_the_model_gives(document: Any) -> None:
    plain = plainly_valid_batch(document)
    assert plain is not None
    assert plain == _model_columns(document)


@pytest.mark.parametrize("document", NOT_PLAIN)
def test_anything_else_is_left_to_the_model_which_refuses_it(document: Any) -> None:
    assert plainly_valid_batch(document) is None
    assert _model_columns(document) is None
