"""Named fault points: a test hook that kills this process at an exact step (crash tests).

`REELBATCH_FAULT_POINT=<name>` makes the first `reach(name)` SIGKILL its own process, as a crash
at that line would: no cleanup, no flush, no exception handler. Unset (always, in production),
`reach` only compares a string. Chaos tests use it where timing a kill from outside cannot hit
a window of microseconds (e.g. between a provider's create call and the write of its answer).
"""

from __future__ import annotations

import functools
import os
import signal

FAULT_POINT_VARIABLE = "REELBATCH_FAULT_POINT"


@functools.cache
def _armed() -> str:
    return os.environ.get(FAULT_POINT_VARIABLE, "")


def reach(name: str) -> None:
    """Kills this process with SIGKILL when the fault point `name` is armed."""
    if _armed() == name:
        os.kill(os.getpid(), signal.SIGKILL)
