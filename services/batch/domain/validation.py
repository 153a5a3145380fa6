"""Validation of a create request, before anything is priced or stored."""

from __future__ import annotations

import re
from collections.abc import Sequence

from libs.errors import InvalidArgument
from services.batch.domain.batch import BatchItem
from services.batch.domain.provider import DEFAULT_RETRIED_FAILURES, RETRYABLE_FAILURES, FailureType

MAX_MODEL_CHARS = 200
MAX_WEBHOOK_URL_CHARS = 2048

# Unicode category "Cc" is exactly U+0000-U+001F and U+007F-U+009F (NUL, the C0/C1 controls and
# DEL); tab and line breaks are ordinary prose. One regex scans a whole batch at C speed.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _has_forbidden_control(text: str) -> bool:
    return _FORBIDDEN_CONTROL.search(text) is not None


def _all_valid(items: Sequence[BatchItem], max_prompt_chars: int) -> bool:
    """True when no item breaks a rule: one pass over the batch with no Python work per character."""
    prompts = [item.prompt for item in items]
    models = {item.model for item in items}
    return (
        max(map(len, prompts)) <= max_prompt_chars
        and all(map(str.strip, prompts))
        and not _has_forbidden_control("\n".join(prompts))
        and all(model.strip() and len(model) <= MAX_MODEL_CHARS for model in models)
        and not _has_forbidden_control("\n".join(models))
    )


def validate_items(items: Sequence[BatchItem], *, max_items: int, max_prompt_chars: int) -> None:
    """Raises InvalidArgument naming the first offending field."""
    if not items:
        raise InvalidArgument("a batch needs at least one item", field="items")
    if len(items) > max_items:
        raise InvalidArgument(
            f"a batch holds at most {max_items} items", field="items", max_items=max_items, count=len(items)
        )
    if _all_valid(items, max_prompt_chars):
        return
    # Something is wrong: find the first offending field, item by item.
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


def retried_failure_types(requested: Sequence[str]) -> frozenset[FailureType]:
    """The failure types whose items a retry-failed retries: those requested (each a retryable
    type), or by default every type a new attempt can change."""
    if not requested:
        return DEFAULT_RETRIED_FAILURES
    if len(requested) > len(FailureType):
        raise InvalidArgument("failure_types names each failure type at most once", field="failure_types")
    retryable = sorted(RETRYABLE_FAILURES)
    chosen: set[FailureType] = set()
    for index, name in enumerate(requested):
        if name == FailureType.CANCELLED:
            raise InvalidArgument(
                "cancelled items are never retried",
                field=f"failure_types[{index}]",
                allowed=",".join(retryable),
            )
        try:
            failure_type = FailureType(name)
        except ValueError:
            raise InvalidArgument(
                "unknown failure type", field=f"failure_types[{index}]", allowed=",".join(retryable)
            ) from None
        chosen.add(failure_type)
    return frozenset(chosen)
