"""Validation of a create request, before anything is priced or stored."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from libs.errors import InvalidArgument
from services.batch.domain.batch import BatchItem

_ALLOWED_CONTROL = frozenset("\t\n\r")
MAX_MODEL_CHARS = 200
MAX_WEBHOOK_URL_CHARS = 2048


def _has_forbidden_control(text: str) -> bool:
    # Category "Cc" covers NUL, the C0/C1 controls and DEL; tab and line breaks are ordinary prose.
    return any(unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROL for char in text)


def validate_items(items: Sequence[BatchItem], *, max_items: int, max_prompt_chars: int) -> None:
    """Raises InvalidArgument naming the first offending field."""
    if not items:
        raise InvalidArgument("a batch needs at least one item", field="items")
    if len(items) > max_items:
        raise InvalidArgument(
            f"a batch holds at most {max_items} items", field="items", max_items=max_items, count=len(items)
        )
    for index, item in enumerate(items):
        prompt_field = f"items[{index}].prompt"
        if not item.prompt.strip():
            raise InvalidArgument("prompt must not be empty", field=prompt_field)
        if len(item.prompt) > max_prompt_chars:
            raise InvalidArgument(
                f"prompt is longer than {max_prompt_chars} characters",
                field=prompt_field,
                max_chars=max_prompt_chars,
            )
        if _has_forbidden_control(item.prompt):
            raise InvalidArgument("prompt contains control characters", field=prompt_field)
        model_field = f"items[{index}].model"
        if not item.model.strip():
            raise InvalidArgument("model must not be empty", field=model_field)
        if len(item.model) > MAX_MODEL_CHARS or _has_forbidden_control(item.model):
            raise InvalidArgument("model is not a valid model name", field=model_field)


def validate_webhook_url(url: str) -> None:
    """An optional http(s) URL."""
    if not url:
        return
    if len(url) > MAX_WEBHOOK_URL_CHARS or not url.startswith(("http://", "https://")):
        raise InvalidArgument("webhook_url must be an http(s) URL", field="webhook_url")
    if _has_forbidden_control(url) or any(char.isspace() for char in url):
        raise InvalidArgument("webhook_url must be an http(s) URL", field="webhook_url")
