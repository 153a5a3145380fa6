"""Choosing the route of each attempt at a remote provider: breakers, quota and rate budgets
(issue 26 items 4 and 6, ADR-148, ADR-149).

`RouteChooser` is `run_task`'s `AttemptRouter` for one task: it walks the model's routes in order
and takes the first whose breaker lets the attempt through, whose provider account is not out of
quota, and whose shared rate budget grants a create call. `BudgetHints` keeps, per worker
process, when each budget was last found spent, so tasks waiting for a budget ask the database
once per freed call rather than once each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from services.batch import metrics as batch_metrics
from services.batch.adapters.sql.breakers import ModelBreakers
from services.batch.adapters.sql.rate_budgets import RateBudgets
from services.batch.domain.breaker import BreakerPolicy, Verdict
from services.batch.domain.provider import FailureType, ProviderFailure, VideoProvider
from services.batch.domain.rate_budget import RateBudget
from services.batch.domain.routing import RoutePick, RoutePolicy, RouteWait
from services.batch.use_cases.breakers import ModelGate

log = logging.getLogger(__name__)

# A waiting task looks again at least this often (a breaker may close, a budget free up).
_MAX_WAIT_SECONDS = 1.0


class BudgetHints:
    """Per worker process: until when (monotonic clock) each budget is known to be spent.

    A hint, never a grant: only a draw from the shared row grants a call. It spares the database
    the draws of every task of this process waiting on the same spent budget.
    """

    def __init__(self) -> None:
        self._spent_until: dict[str, float] = {}

    def wait_for(self, budget: str) -> float:
        """Seconds until the budget may grant again (0: ask the database)."""
        return max(0.0, self._spent_until.get(budget, 0.0) - time.monotonic())

    def spent(self, budget: str, seconds: float) -> None:
        """The budget was found spent for `seconds` more."""
        self._spent_until[budget] = time.monotonic() + seconds


class RouteChooser:
    """The routes of one task's model, as `run_task`'s `AttemptRouter`."""

    def __init__(
        self,
        model: str,
        routes: Sequence[RoutePolicy],
        providers: Mapping[str, VideoProvider],
        *,
        breakers: ModelBreakers | None,
        budgets: RateBudgets | None,
        breaker_policy: BreakerPolicy,
        window_seconds: float,
        hints: BudgetHints,
    ) -> None:
        self._model = model
        # Routes whose provider is configured (a credential set), in order.
        self._routes = [(route, providers[route.provider]) for route in routes if route.provider in providers]
        self._breakers = breakers
        self._budgets = budgets
        self._breaker_policy = breaker_policy
        self._window = window_seconds
        self._hints = hints

    @property
    def routes(self) -> list[str]:
        """The providers of the usable routes, in order."""
        return [route.provider for route, _ in self._routes]

    def _gate(self, route: RoutePolicy) -> ModelGate | None:
        if self._breakers is None:
            return None
        return ModelGate(self._breakers, route.breaker_key, self._breaker_policy)

    def _cooling(self, provider: VideoProvider) -> bool:
        cooling = getattr(provider, "cooling_down", None)
        return bool(cooling(self._model)) if cooling is not None else False

    def has_alternative(self, route: str) -> bool:
        """Whether a route other than `route` is configured and not out of quota."""
        return any(
            policy.provider != route and not self._cooling(provider) for policy, provider in self._routes
        )

    async def pick(
        self, pinned: str | None, *, needs_budget: bool
    ) -> RoutePick | RouteWait | ProviderFailure:
        """The first route that can take the attempt now, a wait, or the failure ending the task."""
        candidates = [
            (route, provider) for route, provider in self._routes if pinned in (None, route.provider)
        ]
        if not candidates:
            # A pinned route no longer in the price list: any route, in order.
            candidates = list(self._routes)
        if not candidates:
            return ProviderFailure(
                FailureType.INTERNAL, f"no provider configured for {self._model}", transient=False
            )
        waits: list[float] = []
        gave_up: ProviderFailure | None = None
        cooling: RoutePick | None = None
        for route, provider in candidates:
            if self._cooling(provider):
                # Out of quota there: skipped, and used only if every route is (its create call
                # then fails the task as before, without being sent).
                cooling = cooling or RoutePick(route.provider, provider, self._gate(route))
                continue
            budgeted = needs_budget and route.requests_per_minute is not None and self._budgets is not None
            hinted = self._hints.wait_for(route.budget_key) if budgeted else 0.0
            if hinted > 0:
                waits.append(hinted)
                continue
            gate = self._gate(route)
            verdict = await gate.verdict() if gate is not None else Verdict.GO
            if isinstance(verdict, ProviderFailure):
                gave_up = gave_up or verdict
                continue
            if not isinstance(verdict, Verdict):
                waits.append(verdict)
                continue
            if budgeted and not await self._granted(route):
                waits.append(self._hints.wait_for(route.budget_key))
                continue
            if verdict is Verdict.PROBE and gate is not None and not await gate.become_probe():
                # Another task took the probe: the call granted above goes unused (never over).
                waits.append(0.01)
                continue
            if route is not self._routes[0][0]:
                batch_metrics.route_failover(self._model, route.provider)
            return RoutePick(route.provider, provider, gate)
        if waits:
            return RouteWait(min(max(min(waits), 0.01), _MAX_WAIT_SECONDS))
        if gave_up is not None:
            return gave_up
        assert cooling is not None  # every candidate was skipped for one of the three reasons
        return cooling

    async def _granted(self, route: RoutePolicy) -> bool:
        assert self._budgets is not None and route.requests_per_minute is not None
        try:
            draw = await self._budgets.draw(
                route.budget_key, RateBudget(route.requests_per_minute, self._window)
            )
        except Exception:
            # Unlike a breaker, a budget that cannot be read is not ignored: the provider would
            # answer 429. The task waits a moment and asks again.
            log.warning("could not draw from the rate budget %s; waiting", route.budget_key, exc_info=True)
            self._hints.spent(route.budget_key, _MAX_WAIT_SECONDS)
            return False
        if not draw.granted:
            self._hints.spent(route.budget_key, draw.wait_seconds)
            batch_metrics.rate_budget_spent(route.budget_key)
        return draw.granted
