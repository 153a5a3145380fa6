"""Billing refusals, each with a stable reason a caller (or the gateway) can act on."""

from __future__ import annotations

from libs.errors import (
    AlreadyExists,
    ErrorCategory,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unauthenticated,
)

# The refusal billing and the batch service share (its one home is libs.errors).
from libs.errors import InsufficientCredits as InsufficientCredits


class UnknownModel(InvalidArgument):
    """A model that is not on the price list."""

    def __init__(self, model: str) -> None:
        super().__init__(f"unknown model {model!r}", model=model)


class StaleQuote(FailedPrecondition):
    """The caller quoted a unit price that is no longer current."""

    reason = "stale_quote"

    def __init__(self, model: str, quoted_price: int, current_price: int) -> None:
        super().__init__(
            f"the price of {model!r} changed from {quoted_price} to {current_price}",
            model=model,
            quoted_price=quoted_price,
            current_price=current_price,
        )


class BalanceLimitExceeded(InvalidArgument):
    """A credit that would take a tenant's balance past the largest one the ledger can hold."""

    def __init__(self, credits: int, room: int) -> None:
        super().__init__(
            f"{credits} credits would exceed the largest balance; at most {max(room, 0)} can be added",
            field="credits",
        )


class FixedRefusal(ServiceError):
    """A refusal that says nothing but its fixed `summary`: each subclass is data (its category, by
    a category base such as `NotFound` or set, its reason and summary); the constructor is here."""

    summary: str

    def __init__(self) -> None:
        super().__init__(self.summary)


class SubjectRefusal(ServiceError):
    """A refusal that says nothing but its fixed `summary` and the id of what it is about, as the
    detail named `subject`: each subclass is data, as with `FixedRefusal`."""

    summary: str
    subject: str

    def __init__(self, subject_id: object) -> None:
        super().__init__(self.summary, **{self.subject: subject_id})


class TenantNotFound(SubjectRefusal, NotFound):
    """No such tenant."""

    summary = "tenant not found"
    subject = "tenant_id"


class BatchRefusal(SubjectRefusal):
    """A refusal about one batch: its detail is the batch id."""

    subject = "batch_id"


class SettlementNotFound(BatchRefusal, NotFound):
    """No hold (hence no settlement) for this batch."""

    summary = "no credits were reserved for this batch"


class HoldNotFound(BatchRefusal):
    """A task outcome or a settlement for a batch whose credits were never reserved."""

    category = ErrorCategory.FAILED_PRECONDITION
    reason = "hold_not_found"
    summary = "no credits are held for this batch"


class BatchReservedByAnotherTenant(BatchRefusal):
    """A batch id that is already reserved for a different tenant."""

    category = ErrorCategory.ALREADY_EXISTS
    reason = "batch_id_conflict"
    summary = "this batch id is already reserved by another tenant"


class ModelNotReserved(FailedPrecondition):
    """A task outcome names a model the batch did not reserve credits for."""

    reason = "model_not_reserved"

    def __init__(self, batch_id: object, model: str) -> None:
        super().__init__(f"batch reserved no credits for model {model!r}", batch_id=batch_id, model=model)


class AlreadySettled(BatchRefusal):
    """A new task outcome for a batch that was already settled."""

    category = ErrorCategory.FAILED_PRECONDITION
    reason = "already_settled"
    summary = "the batch is already settled"


class TooManyOutcomes(FailedPrecondition):
    """More distinct task outcomes than the batch has items."""

    reason = "too_many_outcomes"

    def __init__(self, batch_id: object, item_count: int) -> None:
        super().__init__(
            "more task outcomes than items in the batch", batch_id=batch_id, item_count=item_count
        )


class OutcomeConflict(FailedPrecondition):
    """A task already has the opposite outcome (captured vs refunded)."""

    reason = "outcome_conflict"

    def __init__(self, task_id: str, applied: str) -> None:
        super().__init__(f"task already has outcome {applied}", task_id=task_id, applied=applied)


class OutcomesMissing(FailedPrecondition):
    """Settlement refused: billing has not yet applied an outcome for every task of the batch."""

    reason = "outcomes_missing"

    def __init__(self, batch_id: object, outcomes_applied: int, item_count: int) -> None:
        super().__init__(
            f"{item_count - outcomes_applied} task outcomes are still missing",
            batch_id=batch_id,
            outcomes_applied=outcomes_applied,
            item_count=item_count,
        )


class ApiKeyAlreadyExists(FixedRefusal, AlreadyExists):
    """The exact key to register is already registered."""

    reason = "api_key_exists"
    summary = "this API key is already registered"


class InvalidApiKey(FixedRefusal, Unauthenticated):
    """An unknown or revoked API key (deliberately not saying which)."""

    summary = "invalid API key"


class LedgerInvariantViolated(Exception):
    """A bug, never a customer error: the ledger would break one of its invariants."""


class ApiKeyNotFound(SubjectRefusal, NotFound):
    """No such key for this tenant (another tenant's key is not found either)."""

    summary = "API key not found"
    subject = "key_id"


class PaymentNotFound(SubjectRefusal, NotFound):
    """No such payment for this tenant (another tenant's payment is not found either)."""

    summary = "payment not found"
    subject = "payment_id"


class PaymentsNotConfigured(FixedRefusal):
    """Buying credits online needs a Stripe secret key, and none is configured."""

    category = ErrorCategory.FAILED_PRECONDITION
    reason = "payments_not_configured"
    summary = "online payments are not configured (no Stripe secret key)"


class CheckoutUnavailable(ServiceError):
    """Stripe did not open the Checkout Session (down, or refused the request)."""

    category = ErrorCategory.UNAVAILABLE
    reason = "checkout_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"the payment provider did not open a checkout: {detail}")


class InvalidCredentials(FixedRefusal, Unauthenticated):
    """A console sign-in with a wrong email or password (deliberately not saying which)."""

    reason = "invalid_credentials"
    summary = "wrong email or password"


class AccountLocked(ServiceError):
    """Too many failed sign-ins for this email: locked until the lock-out is over."""

    category = ErrorCategory.RESOURCE_EXHAUSTED
    reason = "account_locked"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many failed sign-ins; try again later", retry_after_seconds=retry_after_seconds)


class SessionExpired(FixedRefusal, Unauthenticated):
    """An unknown, signed-out, idle or too old console session."""

    reason = "session_expired"
    summary = "the session has ended; sign in again"


class InviteNotFound(FixedRefusal, NotFound):
    """An invite link that is unknown, used, withdrawn or expired (deliberately not saying which)."""

    reason = "invite_not_found"
    summary = "this invite link is not valid any more"


class ConsoleUserExists(AlreadyExists):
    """An active console user already signs in with this email."""

    reason = "console_user_exists"

    def __init__(self, email: str) -> None:
        super().__init__("a console user with this email already exists", email=email)


class MemberNotFound(NotFound):
    """No such member (or invite) in this tenant; another tenant's is not found either."""

    def __init__(self, what: str, identifier: object) -> None:
        super().__init__(f"{what} not found", id=identifier)


class NotAnOwner(FixedRefusal):
    """A console user who is not an owner of the tenant tried to manage its members."""

    category = ErrorCategory.PERMISSION_DENIED
    reason = "forbidden"
    summary = "only an owner of this tenant may manage its members"


class LastOwner(FailedPrecondition):
    """Removing or demoting the tenant's last owner would leave nobody able to manage the console."""

    reason = "last_owner"

    def __init__(self, change: str = "removed") -> None:
        super().__init__(f"the last owner cannot be {change}; make someone else an owner first")
