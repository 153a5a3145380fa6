"""The end-to-end stacks of tests/e2e (distributed and embedded, money invariants checked after each
test), for the scale tests that drive them through REST."""

from tests.e2e.conftest import api, money_invariants_hold_afterwards, stack

__all__ = ["api", "money_invariants_hold_afterwards", "stack"]
