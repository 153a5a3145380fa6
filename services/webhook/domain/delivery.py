"""What an attempt's outcome means for the message, and when the next attempt is due."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

MAX_RESPONSE_BODY_CHARS = 1024


class ErrorClass(enum.StrEnum):
    """Why an attempt did not deliver (recorded on the attempt; "" means delivered)."""

    NONE = ""
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    REDIRECT = "3xx"
    CLIENT = "4xx"
    SERVER = "5xx"
    BLOCKED = "blocked"


class Verdict(enum.StrEnum):
    """What happens to the message after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"
    # 410 Gone: the receiver asks us to stop; the endpoint is disabled and the message fails.
    DISABLE_ENDPOINT = "disable_endpoint"


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt produced. `http_status` is 0 when no response arrived."""

    http_status: int
    error_class: ErrorClass
    duration_ms: int
    response_body: str = ""


def classify_status(http_status: int) -> ErrorClass:
    """The error class of an HTTP status (NONE for 2xx)."""
    if 200 <= http_status < 300:
        return ErrorClass.NONE
    if http_status >= 500:
        return ErrorClass.SERVER
    if http_status >= 400:
        return ErrorClass.CLIENT
    return ErrorClass.REDIRECT


def verdict_for(result: AttemptResult) -> Verdict:
    """Retry what may heal by itself (timeouts, connection errors, 5xx, 429); fail the rest at once.

    Other 4xx and 3xx are answers about our request or the URL, which hours of retries would not
    change; the message fails and the customer can replay it once the receiver is fixed
    (docs/decisions.md, ADR-013).
    """
    if result.error_class is ErrorClass.NONE:
        return Verdict.DELIVERED
    if result.http_status == 410:
        return Verdict.DISABLE_ENDPOINT
    if result.error_class in (ErrorClass.TIMEOUT, ErrorClass.CONNECTION, ErrorClass.SERVER):
        return Verdict.RETRY
    if result.http_status in (408, 429):
        return Verdict.RETRY
    return Verdict.FAIL


def retry_delay(
    schedule: Sequence[float], attempts_made: int, jitter_fraction: float, draw: float
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts of this round; None when exhausted.

    `schedule[i]` is the delay before attempt i+1 (schedule[0], the first, is normally 0), so its
    length is the attempt budget. `draw` in [0, 1) spreads retries by up to `jitter_fraction`.
    """
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    return base * (1.0 + jitter_fraction * draw)


def truncate_body(text: str) -> str:
    """The first 1 KiB of a response body, as recorded on the attempt."""
    return text[:MAX_RESPONSE_BODY_CHARS]
