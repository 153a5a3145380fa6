"""Validation of create requests and the request fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest

from libs.errors import InvalidArgument
from services.batch.domain.batch import BatchItem
from services.batch.domain.fingerprint import request_fingerprint
from services.batch.domain.provider import FailureType
from services.batch.domain.validation import retried_failure_types, validate_items, validate_webhook_url


def _validate(items: list[BatchItem]) -> None:
    validate_items(items, max_items=5, max_prompt_chars=20)


def _field_of(items: list[BatchItem]) -> str:
    with pytest.raises(InvalidArgument) as refused:
        _validate(items)
    return refused.value.details["field"]


def test_a_valid_batch_passes() -> None:
    _validate([BatchItem("a cat\ton a mat\n", "sora-2"), BatchItem("a dog", "veo-3")])


def test_an_empty_batch_is_refused() -> None:
    assert _field_of([]) == "items"


def test_too_many_items_are_refused() -> None:
    assert _field_of([BatchItem("p", "m")] * 6) == "items"


def test_an_empty_prompt_names_its_item() -> None:
    assert _field_of([BatchItem("ok", "m"), BatchItem("  ", "m")]) == "items[1].prompt"


def test_a_too_long_prompt_is_refused() -> None:
    assert _field_of([BatchItem("x" * 21, "m")]) == "items[0].prompt"


@pytest.mark.parametrize("bad", ["nul\x00byte", "bell\x07", "esc\x1b[2J", "del\x7f", "c1\x85"])
def test_control_characters_in_a_prompt_are_refused(bad: str) -> None:
    assert _field_of([BatchItem(bad, "m")]) == "items[0].prompt"


def test_an_empty_model_names_its_item() -> None:
    assert _field_of([BatchItem("p", "m"), BatchItem("p", "m"), BatchItem("p", "")]) == "items[2].model"


def test_the_validation_error_has_the_stable_reason() -> None:
    with pytest.raises(InvalidArgument) as refused:
        _validate([])
    assert refused.value.reason == "validation_error"


@pytest.mark.parametrize("url", ["ftp://x", "javascript:alert(1)", "http://a b", "https://x/\x00"])
def test_webhook_urls_must_be_http(url: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_webhook_url(url)


def test_no_webhook_url_is_fine() -> None:
    validate_webhook_url("")
    validate_webhook_url("https://example.com/hook")


ITEMS = [BatchItem("a cat", "sora-2"), BatchItem("a dog", "sora-2")]


def test_fingerprint_is_stable() -> None:
    first = request_fingerprint(ITEMS, "https://example.com/hook")
    assert first == request_fingerprint(list(ITEMS), "https://example.com/hook")
    assert len(first) == 64


@pytest.mark.parametrize(
    ("items", "webhook_url"),
    [
        (list(reversed(ITEMS)), ""),
        ([BatchItem("a cat", "sora-2"), BatchItem("a dog", "veo-3")], ""),
        ([BatchItem("a cat ", "sora-2"), BatchItem("a dog", "sora-2")], ""),
        (ITEMS[:1], ""),
        (ITEMS, "https://example.com/other"),
    ],
)
def test_fingerprint_changes_with_any_part_of_the_body(items: list[BatchItem], webhook_url: str) -> None:
    assert request_fingerprint(items, webhook_url) != request_fingerprint(ITEMS, "")


def test_fingerprint_cannot_be_forged_by_moving_text_between_fields() -> None:
    assert request_fingerprint([BatchItem("ab", "c")], "") != request_fingerprint([BatchItem("a", "bc")], "")


def _json_dumps_fingerprint(items: list[BatchItem], webhook_url: str, deadline_seconds: int = 0) -> str:
    # The encoding fingerprints were first computed with: stored fingerprints must keep matching.
    body: dict[str, object] = {
        "items": [
            {"model": item.model, "prompt": item.prompt}
            | ({"duration_seconds": item.duration_seconds} if item.duration_seconds else {})
            for item in items
        ],
        "webhook_url": webhook_url,
    }
    if deadline_seconds:
        body["deadline_seconds"] = deadline_seconds
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        'quote " and \\ backslash',
        "tab\tnewline\ncr\r",
        "\x00\x01\x1f\x7f\x85",
        "é 日本 😀 \u2028\ufeff",
    ],
)
def test_fingerprint_is_the_canonical_json_dumps_encoding(text: str) -> None:
    items = [BatchItem(text, "sora-2"), BatchItem("b", text, 6)]
    assert request_fingerprint(items, text, deadline_seconds=60) == _json_dumps_fingerprint(items, text, 60)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([BatchItem("ok", "m"), BatchItem("x" * 21, "m"), BatchItem("", "m")], "items[1].prompt"),
        ([BatchItem("ok", "m"), BatchItem("a\x85", "m"), BatchItem("ok", "")], "items[1].prompt"),
        ([BatchItem("ok", "m"), BatchItem("ok", " "), BatchItem("a\x00", "m")], "items[1].model"),
        ([BatchItem("ok", "m"), BatchItem("ok", "m\x07")], "items[1].model"),
        ([BatchItem("ok", "m"), BatchItem("ok", "m" * 201)], "items[1].model"),
    ],
)
def test_the_first_offending_item_is_named_whatever_follows(items: list[BatchItem], field: str) -> None:
    assert _field_of(items) == field


def test_retry_failed_retries_only_failures_a_new_attempt_can_change_unless_asked() -> None:
    assert retried_failure_types([]) == {
        FailureType.TIMEOUT,
        FailureType.PROVIDER_ERROR,
        FailureType.RATE_LIMITED,
        FailureType.INTERNAL,
    }
    assert retried_failure_types(["content_policy", "invalid_input", "content_policy"]) == {
        FailureType.CONTENT_POLICY,
        FailureType.INVALID_INPUT,
    }


@pytest.mark.parametrize(
    ("requested", "field"),
    [
        (["cancelled"], "failure_types[0]"),
        (["timeout", "Timeout"], "failure_types[1]"),
        ([""] * 8, "failure_types"),
    ],
)
def test_retry_failed_refuses_a_failure_type_it_cannot_retry_naming_it(
    requested: list[str], field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        retried_failure_types(requested)
    assert refused.value.details["field"] == field
