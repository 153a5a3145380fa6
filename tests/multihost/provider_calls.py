"""The simulated provider's call logs, read back: which host called the provider for which task
when, and whether one task ever ran on two hosts at once.

Each worker host logs to a file of its own (`REELBATCH_SIMULATED_CALL_LOG`), one JSON line per
call as the call ends (services/batch/adapters/providers/simulated.py). A call still running when
its process was killed is not in the log; every other one is.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProviderCall:
    """One call of the provider: for which task and attempt, on which host, from when to when."""

    host: str
    task_id: str
    attempt: int
    start: float
    end: float
    outcome: str


def read_calls(host: str, path: Path) -> list[ProviderCall]:
    """Every call the worker on `host` logged to `path` (none if it logged nothing)."""
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        calls.append(
            ProviderCall(
                host, entry["task_id"], entry["attempt"], entry["start"], entry["end"], entry["outcome"]
            )
        )
    return calls


def overlapping_calls(calls: Iterable[ProviderCall]) -> list[tuple[ProviderCall, ProviderCall]]:
    """Pairs of calls of one task whose times overlap: the task was executed twice at once."""
    by_task: dict[str, list[ProviderCall]] = defaultdict(list)
    for call in calls:
        by_task[call.task_id].append(call)
    pairs = []
    for task_calls in by_task.values():
        ordered = sorted(task_calls, key=lambda call: call.start)
        for earlier, later in itertools.pairwise(ordered):
            if later.start < earlier.end:
                pairs.append((earlier, later))
    return pairs


def repeated_attempts(calls: Iterable[ProviderCall]) -> dict[tuple[str, int], int]:
    """(task, attempt) pairs called more than once: the attempt ran again after its first run's
    claim was lost (at-least-once execution; these are what a real provider bills twice)."""
    counted = Counter((call.task_id, call.attempt) for call in calls)
    return {key: count for key, count in counted.items() if count > 1}


def first_call_after(calls: Iterable[ProviderCall], host: str, moment: float) -> float | None:
    """When `host` started its first call after `moment` (None if it made none)."""
    starts = [call.start for call in calls if call.host == host and call.start >= moment]
    return min(starts) if starts else None
