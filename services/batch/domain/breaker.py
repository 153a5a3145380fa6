"""A model's circuit breaker (ADR-113): the one home of "this model's provider is down, wait".

Closed: attempts run. After `failure_threshold` consecutive transient failures (any worker's) it
opens: no attempt of the model starts until `open_seconds` have passed, then one attempt, the
probe, runs (half-open) while the others keep waiting. A probe that succeeds closes it; one that
fails opens it again for another `open_seconds`. Any success closes it. A probe whose worker died
is taken over by another once `probe_seconds` have passed.

Waiting costs a task no attempt. An outage that lasted longer than `outage_limit_seconds` (from
the first opening) ends the waiting: the tasks fail as `provider_error`, refunded, so every task
still ends (I4). Times are seconds on one clock (the database's, shared by all workers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a model's breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, and how long tasks wait in all."""

    failure_threshold: int = 5
    open_seconds: float = 30.0
    outage_limit_seconds: float = 900.0
    # How long a probe may run before another worker may probe instead (its worker may be dead).
    probe_seconds: float = 60.0


@dataclass(frozen=True)
class Breaker:
    """One model's breaker. `outage_since`: when it first opened in this outage (None: closed)."""

    model: str
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    outage_since: float | None = None
    retry_at: float | None = None
    probe_until: float | None = None
    opens: int = 0


class Verdict(StrEnum):
    """What an attempt about to start must do."""

    GO = "go"
    PROBE = "probe"
    WAIT = "wait"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Admission:
    """The verdict for one attempt, and for `WAIT` how long until asking again."""

    verdict: Verdict
    wait_seconds: float = 0.0


def admit(breaker: Breaker, now: float, policy: BreakerPolicy) -> Admission:
    """Whether an attempt of the breaker's model may start now."""
    if breaker.state is BreakerState.CLOSED:
        return Admission(Verdict.GO)
    since = breaker.outage_since if breaker.outage_since is not None else now
    if now - since >= policy.outage_limit_seconds:
        return Admission(Verdict.GIVE_UP)
    if breaker.state is BreakerState.OPEN:
        due = breaker.retry_at if breaker.retry_at is not None else now
    else:
        due = breaker.probe_until if breaker.probe_until is not None else now
    if now >= due:
        return Admission(Verdict.PROBE)
    # Never past the outage limit, so a waiting task gives up on time.
    return Admission(Verdict.WAIT, max(0.0, min(due, since + policy.outage_limit_seconds) - now))


def take_probe(breaker: Breaker, now: float, policy: BreakerPolicy) -> Breaker:
    """The breaker once this attempt became the probe (half-open until `probe_seconds` pass)."""
    return replace(breaker, state=BreakerState.HALF_OPEN, probe_until=now + policy.probe_seconds)


def after_failure(breaker: Breaker, now: float, policy: BreakerPolicy) -> Breaker:
    """The breaker after a transient failure of its model."""
    failures = breaker.failures + 1
    if breaker.state is BreakerState.CLOSED and failures < policy.failure_threshold:
        return replace(breaker, failures=failures)
    if breaker.state is BreakerState.OPEN:
        # A job started before the opening failed too: nothing new is learnt.
        return replace(breaker, failures=failures)
    opening = breaker.state is BreakerState.CLOSED
    return replace(
        breaker,
        state=BreakerState.OPEN,
        failures=failures,
        outage_since=now if opening or breaker.outage_since is None else breaker.outage_since,
        retry_at=now + policy.open_seconds,
        probe_until=None,
        opens=breaker.opens + 1 if opening else breaker.opens,
    )


def after_success(breaker: Breaker) -> Breaker:
    """The breaker after a success of its model: closed, the count of failures cleared."""
    return Breaker(breaker.model, opens=breaker.opens)


def forgives(breaker: Breaker) -> bool:
    """Whether a transient failure recorded into `breaker` costs its task no attempt: the
    breaker is open (this failure opened it, or it failed while the provider was down)."""
    return breaker.state is not BreakerState.CLOSED
