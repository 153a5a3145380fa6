"""Who may run what, and when: provider slots with a fair share, dispatch windows, deadlines.

Pure arithmetic over counts the repository reads under its locks; unit-tested without a database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

from services.batch.domain.batch import BatchId, TenantId


class CancelReason(StrEnum):
    """Why a batch stopped early: the customer asked, or its deadline passed."""

    CUSTOMER = "customer"
    DEADLINE = "deadline"


def cancelled_task_message(reason: CancelReason | None, *, started: bool) -> str:
    """The error_message of a task cancelled for `reason` (before or after it started)."""
    if reason is CancelReason.DEADLINE:
        return "the batch deadline passed before it finished"
    return "cancelled while running" if started else "cancelled before it started"


def claimable_slots(*, limit: int, running: int, running_mine: int, competing_tenants: int) -> int:
    """How many more tasks of one model a tenant may start now.

    At most `limit` run at once across all workers. While several tenants (`competing_tenants`,
    the caller's own included) have tasks of the model running or waiting for a slot, each may use
    at most ceil(limit / competing_tenants) of them, so a large batch cannot keep every slot it
    frees for itself; alone, a tenant may use them all.
    """
    free = limit - running
    if free <= 0:
        return 0
    if competing_tenants <= 1:
        return free
    share = math.ceil(limit / competing_tenants)
    return max(0, min(free, share - running_mine))


def allot_slots(
    *,
    limit: int,
    running: Mapping[TenantId, int],
    waiting: AbstractSet[TenantId],
    wanted: Sequence[tuple[TenantId, int]],
) -> list[int]:
    """Slots of one model for several claims in one transaction, in turn.

    `running` counts the model's running tasks per tenant, `waiting` the tenants with tasks
    waiting for a slot. Each claim (tenant, tasks wanted) gets what `claimable_slots` allows after
    the claims before it, exactly as if each had been claimed and committed on its own.
    """
    counts = dict(running)
    granted: list[int] = []
    for tenant_id, count in wanted:
        allowed = min(
            count,
            claimable_slots(
                limit=limit,
                running=sum(counts.values()),
                running_mine=counts.get(tenant_id, 0),
                competing_tenants=len(set(counts) | set(waiting) | {tenant_id}),
            ),
        )
        counts[tenant_id] = counts.get(tenant_id, 0) + allowed
        granted.append(allowed)
    return granted


@dataclass(frozen=True)
class WindowState:
    """One unfinished batch of a tenant: tasks dispatched and not finished, tasks not dispatched."""

    batch_id: BatchId
    outstanding: int
    undispatched: int


def plan_dispatch(
    batches: Sequence[WindowState],
    *,
    chunk_size: int,
    batch_window_chunks: int,
    tenant_window_chunks: int,
) -> dict[BatchId, int]:
    """How many more tasks of each batch to dispatch now (a tenant's batches, oldest first).

    A batch may have at most batch_window_chunks x chunk_size tasks dispatched and unfinished, the
    tenant the tenant window over all its batches. Chunks are handed out round-robin, so a new
    batch of a tenant is not stuck behind its older, larger one.
    """
    if chunk_size < 1 or batch_window_chunks < 1 or tenant_window_chunks < 1:
        raise ValueError("chunk size and windows must be positive")
    batch_window = batch_window_chunks * chunk_size
    tenant_free = tenant_window_chunks * chunk_size - sum(state.outstanding for state in batches)
    outstanding = {state.batch_id: state.outstanding for state in batches}
    undispatched = {state.batch_id: state.undispatched for state in batches}
    planned: dict[BatchId, int] = {}
    progress = True
    while progress:
        progress = False
        for state in batches:
            chunk = min(chunk_size, undispatched[state.batch_id])
            if chunk == 0 or chunk > tenant_free or outstanding[state.batch_id] + chunk > batch_window:
                continue
            planned[state.batch_id] = planned.get(state.batch_id, 0) + chunk
            outstanding[state.batch_id] += chunk
            undispatched[state.batch_id] -= chunk
            tenant_free -= chunk
            progress = True
    return planned
