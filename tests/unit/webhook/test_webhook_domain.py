"""Pure webhook rules: SSRF judgement, signing, retry verdicts and schedule, event routing."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from services.webhook.domain.delivery import AttemptResult, ErrorClass, Verdict, retry_delay, verdict_for
from services.webhook.domain.destinations import DestinationPolicy, check_resolved, parse_target
from services.webhook.domain.errors import UnknownEventType, UnsafeWebhookUrl
from services.webhook.domain.events import endpoint_wants, normalize_event_types, settled_event_type
from services.webhook.domain.records import secrets_signing_at
from services.webhook.domain.signing import secret_from_bytes, webhook_headers

STRICT = DestinationPolicy()
DEMO = DestinationPolicy(allow_http=True, allow_private=True)


def addresses(*values: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(value) for value in values]


def test_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        parse_target("http://example.com/hook", STRICT)
    assert parse_target("http://example.com/hook", DEMO).port == 80


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "192.168.1.5", "169.254.169.254", "::1", "::ffff:10.0.0.1"]
)
def test_internal_addresses_are_refused_in_production(address: str) -> None:
    target = parse_target("https://hooks.example.com/x", STRICT)
    with pytest.raises(UnsafeWebhookUrl):
        check_resolved(target, addresses("93.184.216.34", address), STRICT)


def test_public_address_is_accepted_and_metadata_is_refused_even_in_demo_mode() -> None:
    target = parse_target("https://hooks.example.com/x", STRICT)
    check_resolved(target, addresses("93.184.216.34"), STRICT)
    check_resolved(target, addresses("127.0.0.1"), DEMO)
    with pytest.raises(UnsafeWebhookUrl):
        check_resolved(target, addresses("169.254.169.254"), DEMO)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeWebhookUrl):
        check_resolved(parse_target("https://nowhere.invalid/", STRICT), [], STRICT)


def test_signatures_verify_with_the_reference_library_for_every_secret() -> None:
    old, new = secret_from_bytes(b"a" * 24), secret_from_bytes(b"b" * 24)
    body = b'{"type":"batch.completed"}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = webhook_headers([new, old], "msg_1", timestamp, body)

    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "batch.completed"}


@pytest.mark.parametrize(
    ("status", "error_class", "verdict"),
    [
        (200, ErrorClass.NONE, Verdict.DELIVERED),
        (0, ErrorClass.TIMEOUT, Verdict.RETRY),
        (0, ErrorClass.CONNECTION, Verdict.RETRY),
        (503, ErrorClass.SERVER, Verdict.RETRY),
        (429, ErrorClass.CLIENT, Verdict.RETRY),
        (410, ErrorClass.CLIENT, Verdict.DISABLE_ENDPOINT),
        (400, ErrorClass.CLIENT, Verdict.FAIL),
        (301, ErrorClass.REDIRECT, Verdict.FAIL),
    ],
)
def test_attempt_outcomes_map_to_verdicts(status: int, error_class: ErrorClass, verdict: Verdict) -> None:
    assert verdict_for(AttemptResult(status, error_class, 5)) is verdict


def test_retry_schedule_is_followed_with_bounded_jitter_then_exhausted() -> None:
    schedule = (0, 5, 300)
    assert retry_delay(schedule, 1, 0.1, 0.0) == 5
    assert retry_delay(schedule, 2, 0.1, 0.999) == pytest.approx(329.97)
    assert retry_delay(schedule, 3, 0.1, 0.5) is None


def test_task_events_are_opt_in_and_unknown_types_are_refused() -> None:
    assert endpoint_wants((), "batch.completed")
    assert not endpoint_wants((), "task.failed")
    assert endpoint_wants(("task.failed",), "task.failed")
    with pytest.raises(UnknownEventType):
        normalize_event_types(["batch.exploded"])


def test_a_settled_cancelled_batch_is_announced_as_cancelled() -> None:
    assert settled_event_type("cancelled") == "batch.cancelled"
    assert settled_event_type("partial") == "batch.completed"


def test_a_replaced_secret_signs_alongside_the_new_one_only_until_it_expires() -> None:
    expires = datetime(2026, 1, 21, tzinfo=UTC)
    assert secrets_signing_at("new", "old", expires, datetime(2026, 1, 20, tzinfo=UTC)) == ("new", "old")
    assert secrets_signing_at("new", "old", expires, expires) == ("new",)
    assert secrets_signing_at("new", None, None, datetime(2026, 1, 20, tzinfo=UTC)) == ("new",)
