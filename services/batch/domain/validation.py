"""The rules of a create request, checked before anything is priced or stored: their one home.

Every broken rule is reported at once, as a field violation with the field's path (e.g.
`items[150].prompt`) and a stable code; callers (the gateway included) only check the shape of
their own wire format and pass these on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from libs.errors import MAX_FIELD_VIOLATIONS, FieldViolation, InvalidArgument, ServiceError
from libs.vocabulary import DEFAULT_RETRIED_FAILURES, RETRYABLE_FAILURES, FailureType
from services.batch.domain.batch import BatchItem, Metadata
from services.batch.domain.commands import CreateBatch

# Unicode category "Cc" is exactly U+0000-U+001F and U+007F-U+009F (NUL, the C0/C1 controls and
# DEL); tab and line breaks (LF, and CR of a CRLF a Windows client sends) are ordinary prose. One
# regex scans a whole batch at C speed.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_PROMPT, _MODEL, _DURATION = attrgetter("prompt"), attrgetter("model"), attrgetter("duration_seconds")
_CUSTOM_ID, _METADATA = attrgetter("custom_id"), attrgetter("metadata")

# The codes of the violations (BadRequest.FieldViolation.reason; `code` in the REST error).
EMPTY = "empty"
TOO_LONG = "too_long"
TOO_MANY = "too_many"
CONTROL_CHARACTER = "control_character"
OUT_OF_RANGE = "out_of_range"
INVALID_URL = "invalid_url"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class CreateLimits:
    """The bounds of a create request: the contract's fixed ones and the configured batch size and
    prompt length (built once, in the service's bootstrap)."""

    max_items: int
    max_prompt_chars: int
    max_model_chars: int
    max_duration_seconds: int
    max_webhook_url_chars: int
    max_deadline_seconds: int
    max_request_id_chars: int
    # The client's ids and labels (OpenAI's metadata bounds: 16 pairs, 64-character keys,
    # 512-character values; a custom_id as long as a key).
    max_custom_id_chars: int = 64
    max_metadata_pairs: int = 16
    max_metadata_key_chars: int = 64
    max_metadata_value_chars: int = 512
    max_name_chars: int = 256


def _has_forbidden_control(text: str) -> bool:
    return _FORBIDDEN_CONTROL.search(text) is not None


def _all_valid(items: Sequence[BatchItem], limits: CreateLimits) -> bool:
    """True when no item breaks a rule: one pass over the batch with no Python work per character."""
    # attrgetter maps run in C: 10,000 items' columns in well under a millisecond.
    prompts = list(map(_PROMPT, items))
    models = set(map(_MODEL, items))
    durations = set(map(_DURATION, items))
    return (
        max(map(len, prompts)) <= limits.max_prompt_chars
        and all(map(str.strip, prompts))
        and not _has_forbidden_control("\n".join(prompts))
        and all(model.strip() and len(model) <= limits.max_model_chars for model in models)
        and not _has_forbidden_control("\n".join(models))
        and min(durations) >= 0
        and max(durations) <= limits.max_duration_seconds
        and _labels_valid(items, limits)
    )


def _labels_valid(items: Sequence[BatchItem], limits: CreateLimits) -> bool:
    """True when every custom_id and metadata pair is within bounds and no custom_id repeats."""
    custom_ids = [custom_id for custom_id in map(_CUSTOM_ID, items) if custom_id]
    if custom_ids and (
        max(map(len, custom_ids)) > limits.max_custom_id_chars
        or len(set(custom_ids)) != len(custom_ids)
        or _has_forbidden_control("\n".join(custom_ids))
    ):
        return False
    return all(
        not metadata or not _metadata_violations(("items", 0), metadata, limits)
        for metadata in map(_METADATA, items)
    )


def _metadata_violations(
    location: tuple[str | int, ...], metadata: Metadata, limits: CreateLimits
) -> list[FieldViolation]:
    """The broken bounds of one metadata map (pairs, key and value lengths)."""
    where = (*location, "metadata")
    found: list[FieldViolation] = []
    if len(metadata) > limits.max_metadata_pairs:
        message = f"metadata holds at most {limits.max_metadata_pairs} pairs, got {len(metadata)}"
        found.append(FieldViolation(where, TOO_MANY, message))
    for key, value in metadata:
        if not key:
            found.append(FieldViolation((*where, key), EMPTY, "a metadata key must not be empty"))
        elif len(key) > limits.max_metadata_key_chars:
            message = f"a metadata key must be at most {limits.max_metadata_key_chars} characters"
            found.append(FieldViolation((*where, key[: limits.max_metadata_key_chars]), TOO_LONG, message))
        elif len(value) > limits.max_metadata_value_chars:
            message = f"a metadata value must be at most {limits.max_metadata_value_chars} characters"
            found.append(FieldViolation((*where, key), TOO_LONG, message))
        elif _has_forbidden_control(key + value):
            # NUL cannot be stored; the other controls would garble CSV files and the console.
            message = "metadata contains a control character"
            found.append(FieldViolation((*where, key), CONTROL_CHARACTER, message))
    return found


def _text_violation(location: tuple[str | int, ...], text: str, max_chars: int) -> FieldViolation | None:
    name = location[-1]
    if not text.strip():
        return FieldViolation(location, EMPTY, f"{name} must not be empty")
    if len(text) > max_chars:
        return FieldViolation(location, TOO_LONG, f"{name} must be at most {max_chars} characters")
    if _has_forbidden_control(text):
        # Tab and line breaks are allowed; the OpenAPI document says so at length.
        return FieldViolation(location, CONTROL_CHARACTER, f"{name} contains a control character")
    return None


def _item_violations(index: int, item: BatchItem, limits: CreateLimits) -> list[FieldViolation]:
    found = [
        _text_violation(("items", index, "prompt"), item.prompt, limits.max_prompt_chars),
        _text_violation(("items", index, "model"), item.model, limits.max_model_chars),
    ]
    if not 0 <= item.duration_seconds <= limits.max_duration_seconds:
        maximum = limits.max_duration_seconds
        message = f"duration_seconds must be between 1 and {maximum} (0 or absent: the model's default)"
        found.append(FieldViolation(("items", index, "duration_seconds"), OUT_OF_RANGE, message))
    if item.custom_id:
        found.append(_custom_id_violation(("items", index, "custom_id"), item.custom_id, limits))
    if item.metadata:
        found += _metadata_violations(("items", index), item.metadata, limits)
    return [violation for violation in found if violation is not None]


def _custom_id_violation(
    location: tuple[str | int, ...], custom_id: str, limits: CreateLimits
) -> FieldViolation | None:
    if len(custom_id) > limits.max_custom_id_chars:
        message = f"custom_id must be at most {limits.max_custom_id_chars} characters"
        return FieldViolation(location, TOO_LONG, message)
    if _has_forbidden_control(custom_id):
        return FieldViolation(location, CONTROL_CHARACTER, "custom_id contains a control character")
    return None


def _duplicate_custom_ids(items: Sequence[BatchItem]) -> list[FieldViolation]:
    """A violation at each item whose custom_id an earlier item already has."""
    first: dict[str, int] = {}
    found: list[FieldViolation] = []
    for index, custom_id in enumerate(map(_CUSTOM_ID, items)):
        if not custom_id:
            continue
        earlier = first.setdefault(custom_id, index)
        if earlier != index:
            message = f"custom_id {custom_id!r} is already the custom_id of item {earlier}"
            found.append(FieldViolation(("items", index, "custom_id"), DUPLICATE, message))
    return found


def item_violations(items: Sequence[BatchItem], limits: CreateLimits) -> list[FieldViolation]:
    """Every broken rule of the items, in order, up to MAX_FIELD_VIOLATIONS."""
    if not items:
        return [FieldViolation(("items",), EMPTY, "a batch needs at least one item")]
    found: list[FieldViolation] = []
    if len(items) > limits.max_items:
        message = f"a batch holds at most {limits.max_items} items, got {len(items)}"
        found.append(FieldViolation(("items",), TOO_MANY, message))
    if _all_valid(items, limits):
        return found
    # Something is wrong: name every offending field, item by item, until the cap.
    for index, item in enumerate(items):
        found += _item_violations(index, item, limits)
        if len(found) >= MAX_FIELD_VIOLATIONS:
            break
    found += _duplicate_custom_ids(items)
    return found[:MAX_FIELD_VIOLATIONS]


UNKNOWN_MODEL = "unknown_model"


def priced_line_violations(
    items: Sequence[BatchItem], refusals: Mapping[tuple[str, int], ServiceError]
) -> list[FieldViolation]:
    """Billing's refusals of (model, duration) lines as violations of the items that asked for
    them, in item order, up to MAX_FIELD_VIOLATIONS: an unknown model at `items[i].model`, a
    duration the model does not take at `items[i].duration_seconds`."""
    found: list[FieldViolation] = []
    for index, item in enumerate(items):
        refusal = refusals.get((item.model, item.duration_seconds))
        if refusal is None:
            continue
        if refusal.details.get("field") == "duration_seconds":
            location: tuple[str | int, ...] = ("items", index, "duration_seconds")
            message = f"{refusal.message} for model {item.model!r}"
            found.append(FieldViolation(location, OUT_OF_RANGE, message))
        else:
            message = f"unknown model {item.model!r}; GET /api/enterprise/pricing lists the models"
            found.append(FieldViolation(("items", index, "model"), UNKNOWN_MODEL, message))
        if len(found) >= MAX_FIELD_VIOLATIONS:
            break
    return found


def webhook_url_violation(url: str, limits: CreateLimits) -> FieldViolation | None:
    """The shape of an optional http(s) URL (where it may point is the webhook service's rule)."""
    if not url:
        return None
    if len(url) > limits.max_webhook_url_chars:
        message = f"webhook_url must be at most {limits.max_webhook_url_chars} characters"
        return FieldViolation(("webhook_url",), TOO_LONG, message)
    if (
        not url.startswith(("http://", "https://"))
        or _has_forbidden_control(url)
        or any(char.isspace() for char in url)
    ):
        return FieldViolation(("webhook_url",), INVALID_URL, "webhook_url must be an absolute http(s) URL")
    return None


def request_id_violation(request_id: str, limits: CreateLimits) -> FieldViolation | None:
    """The idempotency key's rule, for creates and retries alike (None: the key is acceptable)."""
    if len(request_id) > limits.max_request_id_chars:
        message = f"request_id must be at most {limits.max_request_id_chars} characters"
        return FieldViolation(("request_id",), TOO_LONG, message)
    return None


def create_violations(command: CreateBatch, limits: CreateLimits) -> list[FieldViolation]:
    """Every broken rule of a create request (items, webhook URL, deadline, request id), capped."""
    found = item_violations(command.items, limits)
    url = webhook_url_violation(command.webhook_url, limits)
    if url is not None:
        found.append(url)
    if not 0 <= command.deadline_seconds <= limits.max_deadline_seconds:
        message = f"deadline_seconds must be between 1 and {limits.max_deadline_seconds} (0 or absent: none)"
        found.append(FieldViolation(("deadline_seconds",), OUT_OF_RANGE, message))
    request_id = request_id_violation(command.request_id, limits)
    if request_id is not None:
        found.append(request_id)
    if command.name:
        name = _text_violation(("name",), command.name, limits.max_name_chars)
        if name is not None:
            found.append(name)
    found += _metadata_violations((), command.metadata, limits)
    return found[:MAX_FIELD_VIOLATIONS]


def validate_create(command: CreateBatch, limits: CreateLimits) -> None:
    """Raises InvalidArgument with every violation of the request (none: it may be priced)."""
    violations = create_violations(command, limits)
    if violations:
        raise InvalidArgument.of(violations)


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
