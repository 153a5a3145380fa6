"""The billing service's handlers: every use case, bound to one service's dependencies.

Transports (the gRPC servicer, the bus consumer) call only these. Each line names the topic
module where the use case and its rules live; nothing else happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

from services.billing.adapters.repository import BillingRepository
from services.billing.domain.console_access import ConsolePolicy
from services.billing.domain.packs import CreditPack
from services.billing.domain.pricing import DEFAULT_CREDIT_VALUE_USD_MICROS, ModelPrice
from services.billing.use_cases import (
    access,
    activity,
    auto_top_up,
    console_access,
    console_settings,
    limits,
    payments,
    reporting,
    reservations,
    settlement,
    spend_control,
    usage,
    wallet,
)
from services.billing.use_cases.dependencies import (
    BatchTotalsSource,
    CheckoutOpener,
    Dependencies,
    OffSessionPayments,
    StripeEventVerifier,
    TaskOutcomeSource,
)

P = ParamSpec("P")
R = TypeVar("R")


class _UseCase(Generic[P, R]):
    """A use case function read as a method of `BillingHandlers`: its dependencies are bound."""

    def __init__(self, function: Callable[Concatenate[Dependencies, P], R]) -> None:
        self._function = function
        self._name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type[BillingHandlers], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, handlers: None, owner: type[BillingHandlers]) -> Self: ...

    @overload
    def __get__(self, handlers: BillingHandlers, owner: type[BillingHandlers]) -> Callable[P, R]: ...

    def __get__(
        self, handlers: BillingHandlers | None, owner: type[BillingHandlers]
    ) -> Self | Callable[P, R]:
        if handlers is None:
            return self
        bound = cast(Callable[P, R], partial(self._function, handlers.dependencies))
        # Kept on the instance, which shadows this (non-data) descriptor: bound once per service.
        setattr(handlers, self._name, bound)
        return bound


class BillingHandlers:
    """The billing service layer, one line per use case; the rules live in the topic modules."""

    def __init__(
        self,
        repository: BillingRepository,
        price_list: Mapping[str, ModelPrice],
        *,
        outcome_source: TaskOutcomeSource | None,
        chunk_size: int,
        totals_source: BatchTotalsSource | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        packs: Mapping[str, CreditPack] | None = None,
        credit_value_usd_micros: int = DEFAULT_CREDIT_VALUE_USD_MICROS,
        stripe_verifier: StripeEventVerifier | None = None,
        checkout: CheckoutOpener | None = None,
        stripe_payments: OffSessionPayments | None = None,
        reservation_group_size: int = reservations.DEFAULT_RESERVATION_GROUP_SIZE,
        console_policy: ConsolePolicy | None = None,
    ) -> None:
        self.dependencies = Dependencies(
            repository=repository,
            prices=dict(price_list),
            chunk_size=chunk_size,
            clock=clock,
            packs=dict(packs or {}),
            credit_value_usd_micros=credit_value_usd_micros,
            outcome_source=outcome_source,
            totals_source=totals_source,
            stripe_verifier=stripe_verifier,
            checkout=checkout,
            stripe_payments=stripe_payments,
            console_policy=console_policy or ConsolePolicy(),
        )
        self._reservations = reservations.Reservations(self.dependencies, group_size=reservation_group_size)
        # Bound once: a reservation is on every create's path.
        self.reserve = self._reservations.reserve
        self.reserve_many = self._reservations.reserve_many

    @property
    def credit_value_usd_micros(self) -> int:
        """What one credit sells for (revenue in margin reports)."""
        return self.dependencies.credit_value_usd_micros

    # Tenants, API keys, operator keys, video access log.
    create_tenant = _UseCase(access.create_tenant)
    create_api_key = _UseCase(access.create_api_key)
    authenticate_api_key = _UseCase(access.authenticate_api_key)
    list_api_keys = _UseCase(access.list_api_keys)
    get_api_key = _UseCase(access.get_api_key)
    revoke_api_key = _UseCase(access.revoke_api_key)
    create_admin_key = _UseCase(access.create_admin_key)
    authenticate_admin_key = _UseCase(access.authenticate_admin_key)
    revoke_admin_key = _UseCase(access.revoke_admin_key)
    list_admin_keys = _UseCase(access.list_admin_keys)
    record_video_access = _UseCase(access.record_video_access)
    list_video_access = _UseCase(access.list_video_access)

    # Console users, invites, sessions; tenants' activity logs.
    create_console_invite = _UseCase(console_access.create_invite)
    get_console_invite = _UseCase(console_access.get_invite)
    accept_console_invite = _UseCase(console_access.accept_invite)
    sign_in_console = _UseCase(console_access.sign_in)
    authenticate_console_session = _UseCase(console_access.authenticate_session)
    sign_out_console = _UseCase(console_access.sign_out)
    list_console_members = _UseCase(console_access.list_members)
    remove_console_member = _UseCase(console_access.remove_member)
    change_console_member_role = _UseCase(console_access.change_role)
    revoke_console_invite = _UseCase(console_access.revoke_invite)
    record_activity = _UseCase(activity.record_activity)
    list_activity = _UseCase(activity.list_activity)

    # Shared limits (every gateway replica's token buckets).
    take_rate_tokens = _UseCase(limits.take_rate_tokens)
    sweep_rate_buckets = _UseCase(limits.sweep_rate_buckets)

    # Wallet.
    top_up = _UseCase(wallet.top_up)
    get_balance = _UseCase(wallet.get_balance)

    # Prices and quotes (`reserve` and `reserve_many` are bound in __init__).
    price_list = _UseCase(reservations.price_list)
    quote = _UseCase(reservations.quote_lines)

    # Budgets and stored quotes (enforced by `reserve`).
    get_budgets = _UseCase(spend_control.get_budgets)
    month_budgets = _UseCase(spend_control.month_budgets)
    set_budget = _UseCase(spend_control.set_budget)
    get_alert_thresholds = _UseCase(spend_control.get_alert_thresholds)
    set_alert_thresholds = _UseCase(spend_control.set_alert_thresholds)
    create_quote = _UseCase(spend_control.create_quote)
    get_quote = _UseCase(spend_control.get_quote)

    # Task outcomes and settlement.
    charge_task = _UseCase(settlement.charge_task)
    apply_task_outcomes = _UseCase(settlement.apply_task_outcomes)
    settle = _UseCase(settlement.settle_batch)
    settle_batches = _UseCase(settlement.settle_batches)
    get_batch_settlement = _UseCase(settlement.get_batch_settlement)

    # Packs and payments.
    packs = _UseCase(payments.list_packs)
    record_invoice_payment = _UseCase(payments.record_invoice_payment)
    handle_stripe_event = _UseCase(payments.handle_stripe_event)
    list_receipts = _UseCase(payments.list_receipts)
    get_receipt = _UseCase(payments.get_receipt)
    open_checkout = _UseCase(payments.open_checkout)

    # Automatic top-up (the crossing is detected by `reserve`; credits arrive by `handle_stripe_event`).
    get_auto_top_up = _UseCase(auto_top_up.get_auto_top_up)
    set_auto_top_up = _UseCase(auto_top_up.set_auto_top_up)
    charge_due_top_ups = _UseCase(auto_top_up.charge_due_top_ups)

    # The customer console's usage and settings.
    usage = _UseCase(usage.tenant_usage)
    get_console_settings = _UseCase(console_settings.get_console_settings)
    update_console_settings = _UseCase(console_settings.update_console_settings)

    # Ledger pages, statements, finance, margins, reconciliation.
    list_ledger_entries = _UseCase(reporting.list_ledger_entries)
    statement = _UseCase(reporting.monthly_statement)
    monthly_margins = _UseCase(reporting.monthly_margins)
    estimate_margin = _UseCase(reporting.estimate_delivered_margin)
    batch_margin = _UseCase(reporting.batch_real_margin)
    list_tenants = _UseCase(reporting.list_tenants)
    batch_ledger = _UseCase(reporting.batch_ledger)
    reconcile = _UseCase(reporting.reconcile)
    export_ledger = _UseCase(reporting.export_ledger)
