"""Refusals of the batch service, each with a stable reason the caller can act on."""

from __future__ import annotations

from typing import TypeAlias

import libs.errors
from libs.errors import (
    AlreadyExists,
    ErrorCategory,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)

# Names follow libs.errors (InvalidArgument, NotFound): the refusal itself, no "Error" suffix.


class InsufficientCredits(libs.errors.InsufficientCredits):
    """The tenant cannot afford the batch; the batch is recorded as rejected and owes nothing.

    Billing's refusal (same reason and details), worded for the customer who sees it: the
    figures are in its details."""

    summary = "insufficient credits for this batch"


class ModelUnavailable(InvalidArgument):
    """A model of the batch is not on billing's price list (withdrawn after the quote, or never
    there); a batch that was stored for it is recorded as rejected and owes nothing."""


class IdempotencyKeyReused(AlreadyExists):
    """The request id was already used for a batch with another body."""

    reason = "idempotency_key_reused"


class BillingUnavailable(Unavailable):
    """Billing could not be reached; the request may be retried with the same request id."""


class PriceChanged(FailedPrecondition):
    """Billing's price of a line changed between the quote and the reservation (a price list
    deployed meanwhile); the batch is re-priced before anything is frozen."""

    reason = "stale_quote"


class TooManyOpenBatches(ServiceError):
    """The tenant already has as many unfinished batches as the caller allows; nothing was stored
    (the gateway answers 429 rate_limited with Retry-After)."""

    category = ErrorCategory.RESOURCE_EXHAUSTED
    reason = "rate_limited"
    # A batch takes seconds to minutes: asking again sooner than this is pointless.
    RETRY_AFTER_SECONDS = 5

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"at most {limit} batches may be in progress at once",
            retry_after_seconds=self.RETRY_AFTER_SECONDS,
        )
        self.limit = limit


class BatchNotFinished(FailedPrecondition):
    """The batch still has tasks to run; only a finished batch can have its failures retried."""

    reason = "batch_not_finished"


class BatchNotFound(NotFound):
    """No such batch in the caller's scope (another tenant's batch is not found either)."""


class InvalidCursor(InvalidArgument):
    """A page cursor this service did not hand out."""


class InputFilesUnavailable(Unavailable):
    """This server has no input file storage wired (a server built without it)."""


class BudgetExceeded(FailedPrecondition):
    """A monthly budget of the tenant (its own, its key's, its project's) cannot cover the batch;
    the batch is recorded as rejected and owes nothing."""

    reason = "budget_exceeded"

    def __init__(
        self, required_credits: int, remaining_credits: int, period_end: str, **details: object
    ) -> None:
        super().__init__(
            "this batch would exceed a monthly budget; nothing was frozen",
            required_credits=required_credits,
            remaining_credits=remaining_credits,
            period_end=period_end,
            **details,
        )
        self.required_credits = required_credits
        self.remaining_credits = remaining_credits


class DebtOutstanding(FailedPrecondition):
    """The tenant owes credits (a refunded or disputed payment already spent, billing's ADR-134):
    the batch is recorded as rejected and owes nothing until a payment pays the debt."""

    reason = "debt_outstanding"

    def __init__(self, debt_credits: int, required_credits: int, **details: object) -> None:
        super().__init__(
            f"this account owes {debt_credits} credits (a refunded or disputed payment already spent);"
            " buy credits to pay the debt, then retry; nothing was frozen",
            debt_credits=debt_credits,
            required_credits=required_credits,
            **details,
        )
        self.debt_credits = debt_credits
        self.required_credits = required_credits


class QuoteNotFound(NotFound):
    """No such quote for this tenant (another tenant's is not found either)."""

    reason = "quote_not_found"


class QuoteRefused(FailedPrecondition):
    """The cited quote cannot be honoured (`reason`: quote_used, quote_expired, quote_mismatch or
    quote_not_found); nothing was frozen."""

    MESSAGES = {
        "quote_used": "this quote was already used by another batch; request a new quote",
        "quote_expired": "this quote has expired; request a new quote",
        "quote_mismatch": "this request's body differs from the one the quote priced; quote this body",
        "quote_not_found": "quote not found",
    }

    def __init__(self, reason: str, **details: object) -> None:
        super().__init__(self.MESSAGES.get(reason, "this quote cannot be used"), **details)
        self.reason = reason


# Billing's refusals that reject a batch for good: retrying cannot succeed, so the batch is recorded
# as rejected, owes nothing and never runs (whether its create or the recovery loop froze it).
BatchRejection: TypeAlias = (
    InsufficientCredits | BudgetExceeded | DebtOutstanding | QuoteRefused | ModelUnavailable
)
BATCH_REJECTIONS = (InsufficientCredits, BudgetExceeded, DebtOutstanding, QuoteRefused, ModelUnavailable)
