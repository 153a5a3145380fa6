"""The token bucket rule every shared limit uses (libs/token_bucket.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.token_bucket import BucketState, draw, seconds_until_full, seconds_until_token


def test_a_new_bucket_is_full_and_grants_what_it_holds() -> None:
    taken = draw(None, 10.0, wanted=5, rate=1.0, burst=3)

    assert taken.granted == 3
    assert taken.bucket == BucketState(0.0, 10.0)


def test_a_bucket_refills_with_time_but_never_past_its_burst() -> None:
    empty = BucketState(0.0, 0.0)

    assert draw(empty, 1.5, wanted=0, rate=2.0, burst=10).bucket.tokens == pytest.approx(3.0)
    assert draw(empty, 100.0, wanted=0, rate=2.0, burst=10).bucket.tokens == 10.0


def test_only_whole_tokens_are_granted() -> None:
    taken = draw(BucketState(1.9, 0.0), 0.0, wanted=3, rate=1.0, burst=5)

    assert taken.granted == 1
    assert taken.bucket.tokens == pytest.approx(0.9)


def test_returned_tokens_come_back_before_the_draw_capped_at_the_burst() -> None:
    assert draw(BucketState(0.0, 0.0), 0.0, wanted=2, rate=1.0, burst=5, returned=2).granted == 2
    assert draw(BucketState(4.0, 0.0), 0.0, wanted=0, rate=1.0, burst=5, returned=3).bucket.tokens == 5.0


def test_a_clock_running_backwards_adds_nothing() -> None:
    taken = draw(BucketState(1.0, 50.0), 40.0, wanted=0, rate=1.0, burst=5)

    assert taken.bucket == BucketState(1.0, 50.0)


def test_waits_until_a_token_and_until_full() -> None:
    assert seconds_until_token(0.25, 0.5) == pytest.approx(1.5)
    assert seconds_until_token(1.0, 0.5) == 0.0
    assert seconds_until_full(1.0, 2.0, 5) == pytest.approx(2.0)


@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=500),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=5), st.integers(min_value=0, max_value=50)), max_size=40
    ),
)
def test_what_is_granted_never_exceeds_the_burst_plus_the_refill(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    bucket: BucketState | None = None
    now = granted = 0.0
    for elapsed, wanted in steps:
        now += elapsed
        taken = draw(bucket, now, wanted=wanted, rate=rate, burst=burst)
        bucket = taken.bucket
        granted += taken.granted
        assert 0 <= taken.bucket.tokens <= burst

    assert granted <= burst + rate * now + 1e-6
