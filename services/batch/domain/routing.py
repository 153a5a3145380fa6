"""Provider routes of a model and failover between them (issue 26 items 4 and 6, ADR-148, ADR-149).

The same model is often sold by several providers (Veo through the Gemini API, fal and
Replicate). The price list names a model's own provider and, optionally, further routes in order
of preference. Before each attempt a task takes the first route that can serve it now: its
circuit breaker lets attempts through, its provider account is not out of quota, and its
requests-per-minute budget grants a create call. When none can, the task waits (costing no
attempt). A task with a job in doubt (or a recorded job to resume) stays on that job's route:
sending it elsewhere could pay two providers for one video. Whichever route makes the video,
the customer pays the price frozen at intake; each provider job records its provider (the
route) and what that route costs us.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from services.batch.domain.execution import AttemptGate
    from services.batch.domain.provider import ProviderFailure, VideoProvider


@dataclass(frozen=True)
class RoutePolicy:
    """One provider selling a model: its breaker, its rate budget and what a job costs there."""

    provider: str
    # The breaker of the route (`breaker_key`) and the budget it draws from (`budget_key`).
    breaker_key: str
    budget_key: str
    # Create calls a window allows (None: no budget).
    requests_per_minute: int | None = None
    # One job of a video of the model's default length, US dollar micros (0: unknown).
    provider_cost_usd_micros: int = 0


def breaker_key(model: str, provider: str, position: int) -> str:
    """The breaker of a model's route: the model's own name for its first route (the breaker
    ADR-113 introduced, as before), `model@provider` for a fallback route."""
    return model if position == 0 else f"{model}@{provider}"


def budget_key(provider: str, provider_model: str) -> str:
    """The budget a route draws from: providers set their limits per model of theirs and per
    account (project), so two of our models sent as the same provider model share one."""
    return f"{provider}:{provider_model}"


@dataclass(frozen=True)
class RoutePick:
    """The route an attempt runs on: its provider name, adapter and breaker."""

    route: str
    provider: VideoProvider
    gate: AttemptGate | None = None


@dataclass(frozen=True)
class RouteWait:
    """No route can take the attempt now: ask again after `seconds`."""

    seconds: float


class AttemptRouter(Protocol):
    """Chooses the route of each attempt of one task (see the module docstring)."""

    async def pick(
        self, pinned: str | None, *, needs_budget: bool
    ) -> RoutePick | RouteWait | ProviderFailure:
        """The route to run the attempt on now, a wait, or the failure that ends the task.

        `pinned`: the only route allowed (a job in doubt or to resume is there). `needs_budget`:
        the attempt will make a create call (False when it resumes a recorded job).
        """
        ...

    def has_alternative(self, route: str) -> bool:
        """Whether another route could serve this task when `route` cannot."""
        ...


@dataclass(frozen=True)
class RouteUsage:
    """What one route of a model did, from the provider job journal (the admin overview)."""

    model: str
    provider: str
    tasks: int
    jobs: int
    succeeded_jobs: int
    failed_jobs: int
    cost_usd_micros: int
    # Share of the model's videos made on this route (0..1), set by `with_video_shares`.
    video_share: float = 0.0


def with_video_shares(usages: Iterable[RouteUsage]) -> list[RouteUsage]:
    """The usages with each route's share of its model's videos (0 for a model that made none)."""
    listed = list(usages)
    videos: dict[str, int] = defaultdict(int)
    for usage in listed:
        videos[usage.model] += usage.succeeded_jobs
    return [
        replace(usage, video_share=usage.succeeded_jobs / videos[usage.model] if videos[usage.model] else 0.0)
        for usage in listed
    ]
