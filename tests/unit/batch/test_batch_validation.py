"""Validation of create requests and the request fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest

from libs.errors import MAX_FIELD_VIOLATIONS, InvalidArgument
from services.batch.domain.batch import BatchItem
from services.batch.domain.commands import CreateBatch
from services.batch.domain.fingerprint import request_fingerprint
from services.batch.domain.provider import FailureType
from services.batch.domain.validation import retried_failure_types, validate_create
from services.batch.limits import create_limits

LIMITS = create_limits(max_batch_items=5, max_prompt_chars=20)


def _refusal(items: list[BatchItem], **fields: object) -> InvalidArgument:
    command = CreateBatch(tenant_id="t", request_id="", items=tuple(items), **fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as refused:
        validate_create(command, LIMITS)
    return refused.value


def _verdict(items: list[BatchItem], **fields: object) -> list[tuple[str, str]]:
    return [(violation.field, violation.code) for violation in _refusal(items, **fields).violations]


def _field_of(items: list[BatchItem]) -> str:
    return _verdict(items)[0][0]


def test_a_valid_batch_passes() -> None:
    command = CreateBatch(
        "t", "", (BatchItem("a cat\ton a mat\r\n", "sora-2"), BatchItem("a dog", "veo-3", 6))
    )
    validate_create(command, LIMITS)


def test_an_empty_batch_is_refused() -> None:
    assert _verdict([]) == [("items", "empty")]


def test_too_many_items_are_refused() -> None:
    assert _verdict([BatchItem("p", "m")] * 6) == [("items", "too_many")]


def test_an_empty_prompt_names_its_item() -> None:
    assert _verdict([BatchItem("ok", "m"), BatchItem("  ", "m")]) == [("items[1].prompt", "empty")]


def test_a_too_long_prompt_is_refused() -> None:
    assert _verdict([BatchItem("x" * 21, "m")]) == [("items[0].prompt", "too_long")]


@pytest.mark.parametrize("bad", ["nul\x00byte", "bell\x07", "esc\x1b[2J", "del\x7f", "c1\x85", "vt\x0b"])
def test_control_characters_in_a_prompt_are_refused(bad: str) -> None:
    assert _verdict([BatchItem(bad, "m")]) == [("items[0].prompt", "control_character")]


def test_an_empty_model_names_its_item() -> None:
    assert _field_of([BatchItem("p", "m"), BatchItem("p", "m"), BatchItem("p", "")]) == "items[2].model"


def test_the_validation_error_has_the_stable_reason() -> None:
    assert _refusal([]).reason == "validation_error"


def test_every_violation_of_the_request_is_reported_at_once() -> None:
    items = [
        BatchItem("ok", "m"),
        BatchItem("", "m"),
        BatchItem("x" * 21, "m" * 201),
        BatchItem("ok", "m", -1),
        BatchItem("a\x00b", "m\x07", 3601),
        BatchItem("ok", "m"),
    ]
    verdict = _verdict(items, webhook_url="ftp://x", deadline_seconds=-1)
    assert verdict == [
        ("items", "too_many"),
        ("items[1].prompt", "empty"),
        ("items[2].prompt", "too_long"),
        ("items[2].model", "too_long"),
        ("items[3].duration_seconds", "out_of_range"),
        ("items[4].prompt", "control_character"),
        ("items[4].model", "control_character"),
        ("items[4].duration_seconds", "out_of_range"),
        ("webhook_url", "invalid_url"),
        ("deadline_seconds", "out_of_range"),
    ]
    refusal = _refusal(items, webhook_url="ftp://x", deadline_seconds=-1)
    assert refusal.message.startswith("invalid request: items: a batch holds at most 5 items")
    assert refusal.message.endswith("(and 7 more)")


def test_the_violations_reported_are_capped() -> None:
    limits = create_limits(max_batch_items=10_000, max_prompt_chars=20)
    command = CreateBatch("t", "", (BatchItem("", ""),) * 10_000)
    with pytest.raises(InvalidArgument) as refused:
        validate_create(command, limits)
    assert len(refused.value.violations) == MAX_FIELD_VIOLATIONS
    assert refused.value.violations[-1].field == f"items[{MAX_FIELD_VIOLATIONS // 2 - 1}].model"


@pytest.mark.parametrize(
    ("seconds", "accepted"), [(0, True), (1, True), (604_800, True), (-1, False), (604_801, False)]
)
def test_deadlines_of_one_second_to_seven_days_or_none_are_accepted(seconds: int, accepted: bool) -> None:
    command = CreateBatch("t", "", (BatchItem("p", "m"),), deadline_seconds=seconds)
    if accepted:
        validate_create(command, LIMITS)
    else:
        assert _verdict([BatchItem("p", "m")], deadline_seconds=seconds) == [
            ("deadline_seconds", "out_of_range")
        ]


def test_a_request_id_longer_than_the_contract_allows_is_refused() -> None:
    command = CreateBatch("t", "r" * 256, (BatchItem("p", "m"),))
    with pytest.raises(InvalidArgument) as refused:
        validate_create(command, LIMITS)
    assert [violation.field for violation in refused.value.violations] == ["request_id"]


@pytest.mark.parametrize(
    "url", ["ftp://x", "javascript:alert(1)", "http://a b", "https://x/\x00", "https://x/" + "a" * 2040]
)
def test_webhook_urls_must_be_http(url: str) -> None:
    assert [field for field, _ in _verdict([BatchItem("p", "m")], webhook_url=url)] == ["webhook_url"]


def test_no_webhook_url_is_fine() -> None:
    for url in ("", "https://example.com/hook"):
        validate_create(CreateBatch("t", "", (BatchItem("p", "m"),), webhook_url=url), LIMITS)


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
