"""The multi-host test's own accounting (tests/multihost): provider calls found running twice at
once, attempts run again, and a tenant's admitted requests against its limit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.multihost.load import Answer, rate_limit_check
from tests.multihost.provider_calls import (
    ProviderCall,
    first_call_after,
    overlapping_calls,
    read_calls,
    repeated_attempts,
)


def _call(host: str, task: str, start: float, end: float, attempt: int = 1) -> ProviderCall:
    return ProviderCall(host, task, attempt, start, end, "succeeded")


def test_calls_of_one_task_that_overlap_in_time_are_reported_whatever_their_hosts() -> None:
    calls = [
        _call("worker-1", "a", 0.0, 1.0),
        _call("worker-2", "a", 0.5, 1.5),  # overlaps the first
        _call("worker-3", "a", 2.0, 3.0),  # after both: a re-execution, not a concurrent one
        _call("worker-1", "b", 0.0, 1.0),
        _call("worker-2", "c", 0.2, 0.4),
    ]
    assert overlapping_calls(calls) == [(calls[0], calls[1])]


def test_an_attempt_called_again_is_a_repeat_but_the_next_attempt_is_not() -> None:
    calls = [
        _call("worker-1", "a", 0.0, 1.0, attempt=1),
        _call("worker-1", "a", 1.1, 2.0, attempt=2),
        _call("worker-2", "b", 0.0, 1.0, attempt=1),
        _call("worker-3", "b", 5.0, 6.0, attempt=1),
    ]
    assert repeated_attempts(calls) == {("b", 1): 2}


def test_the_first_call_after_a_moment_is_the_hosts_own(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    lines = [
        {"task_id": "a", "attempt": 1, "start": 1.0, "end": 1.2, "pid": 7, "outcome": "succeeded"},
        {"task_id": "b", "attempt": 1, "start": 9.0, "end": 9.2, "pid": 7, "outcome": "content_policy"},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    calls = [*read_calls("worker-3", log), _call("worker-1", "c", 4.0, 4.5)]
    assert [call.outcome for call in calls[:2]] == ["succeeded", "content_policy"]
    assert first_call_after(calls, "worker-3", 2.0) == 9.0
    assert first_call_after(calls, "worker-3", 10.0) is None
    assert read_calls("worker-2", tmp_path / "missing.jsonl") == []


def _answer(sent: float, received: float, status: int, code: str | None = None, tenant: str = "t") -> Answer:
    return Answer(tenant, 0, "/api/enterprise/credits", sent, received, status, code)


def test_a_window_counts_admitted_refused_and_unavailable_requests_wholly_inside_it() -> None:
    answers = [
        _answer(0.9, 1.1, 200),  # sent before the window: not counted
        *(_answer(1.0 + i * 0.01, 1.05 + i * 0.01, 200) for i in range(12)),
        *(_answer(1.2, 1.3, 429, "rate_limited") for _ in range(30)),
        _answer(1.4, 1.5, 503, "unavailable"),
        _answer(1.5, 1.6, 200, tenant="other"),
        _answer(2.9, 3.1, 200),  # answered after the window: not counted
    ]
    check = rate_limit_check(answers, "t", (1.0, 3.0), rate=2.0, burst=10)
    assert (check.admitted, check.refused, check.unavailable) == (12, 30, 1)
    assert check.allowed == 10 + 2.0 * 2.0
    assert check.held


def test_more_admitted_than_the_burst_and_the_refill_is_a_limit_not_held() -> None:
    answers = [_answer(0.0, 0.1, 200) for _ in range(13)]
    check = rate_limit_check(answers, "t", (0.0, 1.0), rate=2.0, burst=10)
    assert (check.admitted, check.allowed, check.held) == (13, 12.0, False)
