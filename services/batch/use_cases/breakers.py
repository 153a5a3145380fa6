"""The attempt gate of a model's shared circuit breaker (ADR-113).

Before each attempt at a remote provider a task asks its model's breaker: it runs, runs as the
probe, waits (costing no attempt) or gives up when the outage outlasted its limit. After the
attempt it reports the result. The breaker is an optimisation of the provider's side, so a
database hiccup while asking never fails a task: the attempt then just runs. Looks are answered
from a read at most a second old (`ModelBreakers.recent`, ADR-161); changes take the row's lock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.domain.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerState,
    Verdict,
    admit,
    after_failure,
    after_success,
    forgives,
    take_probe,
)
from services.batch.domain.provider import FailureType, ProviderFailure

log = logging.getLogger(__name__)

# A waiting task asks again at least this often (another worker's probe may have closed it).
_MAX_WAIT_SECONDS = 1.0


class ModelGate:
    """The breaker of one model, as `run_task`'s `AttemptGate`."""

    def __init__(
        self,
        breakers: ModelBreakers,
        model: str,
        policy: BreakerPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._breakers = breakers
        self._model = model
        self._policy = policy
        self._sleep = sleep

    async def admit(self) -> ProviderFailure | None:
        """Waits while the breaker is open; None when the attempt may start, the failure to end
        the task with when the outage outlasted its limit."""
        while True:
            outcome = await self.look()
            if outcome is None or isinstance(outcome, ProviderFailure):
                return outcome
            await self._sleep(outcome)

    async def look(self) -> ProviderFailure | float | None:
        """One look at the breaker, without waiting: None when the attempt may start (as the probe
        if one was due and this asker took it), seconds to wait, or the failure that ends the
        task when the outage outlasted its limit."""
        verdict = await self.verdict()
        if isinstance(verdict, Verdict):
            if verdict is Verdict.GO or await self.become_probe():
                return None
            # Another asker took the probe under the lock: ask again shortly.
            return 0.01
        return verdict

    async def verdict(self) -> Verdict | ProviderFailure | float:
        """What the breaker says now: GO, PROBE (due: `become_probe` to take it), seconds to
        wait, or the give-up failure. A database error says GO (the breaker saves provider
        calls; it must not fail tasks of its own)."""
        try:
            # A read up to a second old (ADR-161): thousands of attempts starting together ask once.
            breaker, now = await self._breakers.recent(self._model)
        except Exception:
            log.warning("could not read the breaker of %s; attempting anyway", self._model, exc_info=True)
            return Verdict.GO
        admission = admit(breaker, now, self._policy)
        if admission.verdict in (Verdict.GO, Verdict.PROBE):
            return admission.verdict
        if admission.verdict is Verdict.GIVE_UP:
            return ProviderFailure(
                FailureType.PROVIDER_ERROR,
                f"{self._model}: its provider has been unavailable for over "
                f"{self._policy.outage_limit_seconds:g}s (circuit breaker open)",
                transient=False,
            )
        return min(max(admission.wait_seconds, 0.01), _MAX_WAIT_SECONDS)

    async def become_probe(self) -> bool:
        """Takes the due probe under the row's lock; False when another asker took it first."""
        try:
            before, after = await self._breakers.change(self._model, self._probe)
        except Exception:
            log.warning("could not take the probe of %s; attempting anyway", self._model, exc_info=True)
            return True
        # Only the asker whose change made it half-open is the probe.
        return after != before

    def _probe(self, breaker: Breaker, now: float) -> Breaker:
        # Under the row lock: only the first asker of a due breaker becomes the probe.
        if admit(breaker, now, self._policy).verdict is not Verdict.PROBE:
            return breaker
        return take_probe(breaker, now, self._policy)

    async def failed(self, failure: ProviderFailure) -> bool:
        """Counts a transient failure; whether it costs the task no attempt (breaker open)."""
        try:
            before, after = await self._breakers.change(
                self._model, functools.partial(_failed, policy=self._policy)
            )
        except Exception:
            log.warning("could not record a failure in the breaker of %s", self._model, exc_info=True)
            return False
        if after.opens > before.opens or (before.state is BreakerState.HALF_OPEN and after != before):
            batch_metrics.breaker_changed(self._model, after.state.value)
            log.error(
                "%s: circuit breaker open after %d consecutive transient failures (%s); tasks wait",
                self._model,
                after.failures,
                failure.message,
            )
        return forgives(after)

    async def succeeded(self) -> None:
        """Closes the breaker if anything was counted (one read when it is clean)."""
        try:
            # A clean breaker seen up to a second ago costs no read: a count of failures made
            # since by another worker is closed by its own next success, or by ours once seen.
            breaker, _ = await self._breakers.recent(self._model)
            if breaker.state is BreakerState.CLOSED and breaker.failures == 0:
                return
            before, after = await self._breakers.change(self._model, lambda found, _now: after_success(found))
        except Exception:
            log.warning("could not record a success in the breaker of %s", self._model, exc_info=True)
            return
        if before.state is not BreakerState.CLOSED:
            batch_metrics.breaker_changed(self._model, after.state.value)
            log.warning("%s: circuit breaker closed, its provider answers again", self._model)


def _failed(breaker: Breaker, now: float, *, policy: BreakerPolicy) -> Breaker:
    return after_failure(breaker, now, policy)
