"""The shared vocabulary: whose fault each failure was, what is retried, and how values are listed."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import BaseModel, ValidationError

from libs.vocabulary import (
    DEFAULT_RETRIED_FAILURES,
    FAULT_BY_FAILURE_TYPE,
    RETRYABLE_FAILURES,
    TRANSIENT_FAILURES,
    FailureType,
    Fault,
    TaskStatus,
    fault_of,
    listed,
    one_of,
)


@pytest.mark.parametrize(
    ("failure_type", "fault"),
    [
        ("timeout", Fault.PROVIDER),
        ("provider_error", Fault.PROVIDER),
        ("rate_limited", Fault.PROVIDER),
        ("content_policy", Fault.CUSTOMER_INPUT),
        ("invalid_input", Fault.CUSTOMER_INPUT),
        ("internal", Fault.US),
        ("cancelled", Fault.CANCELLED),
    ],
)
def test_each_failure_type_has_the_fault_operators_see(failure_type: str, fault: Fault) -> None:
    assert fault_of(failure_type) is fault
    assert fault_of(FailureType(failure_type)) is fault


def test_every_failure_type_has_a_fault_and_an_unknown_one_is_ours() -> None:
    assert set(FAULT_BY_FAILURE_TYPE) == set(FailureType)
    assert fault_of("a_type_from_a_newer_release") is Fault.US
    assert fault_of("") is Fault.US


def test_retried_by_default_are_the_failures_a_new_attempt_can_change() -> None:
    assert FailureType.CANCELLED not in RETRYABLE_FAILURES
    assert set(FailureType) - {FailureType.CANCELLED} == RETRYABLE_FAILURES
    assert {
        FailureType.TIMEOUT,
        FailureType.PROVIDER_ERROR,
        FailureType.RATE_LIMITED,
        FailureType.INTERNAL,
    } == DEFAULT_RETRIED_FAILURES
    assert TRANSIENT_FAILURES <= DEFAULT_RETRIED_FAILURES


def test_values_are_listed_and_validated_in_the_vocabulary_order() -> None:
    assert listed(TaskStatus) == "queued, running, succeeded, failed or cancelled"
    assert listed(DEFAULT_RETRIED_FAILURES) == "timeout, provider_error, rate_limited or internal"
    assert listed({TaskStatus.FAILED}) == "failed"
    assert get_args(one_of(RETRYABLE_FAILURES)) == (
        "timeout",
        "provider_error",
        "rate_limited",
        "content_policy",
        "invalid_input",
        "internal",
    )

    class Filter(BaseModel):
        status: one_of(TaskStatus)  # type: ignore[valid-type]

    assert Filter(status="running").status == "running"
    with pytest.raises(ValidationError) as refused:
        Filter(status="exploded")
    assert refused.value.errors()[0]["type"] == "literal_error"
