"""Billing use cases: each one a transaction that runs the domain rules against the repository."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from libs.errors import InvalidArgument, ServiceError
from libs.group_commit import GroupCommitter
from services.billing import metrics as billing_metrics
from services.billing.adapters.events import batch_settled_event
from services.billing.adapters.repository import (
    BillingRepository,
    LedgerTransaction,
    PaymentEventRecord,
    PlannedReservation,
)
from services.billing.domain import api_keys
from services.billing.domain.errors import (
    ApiKeyAlreadyExists,
    ApiKeyNotFound,
    BatchReservedByAnotherTenant,
    HoldNotFound,
    InvalidApiKey,
    LedgerInvariantViolated,
    OutcomeConflict,
    OutcomesMissing,
    SettlementNotFound,
    TenantNotFound,
)
from services.billing.domain.finance import (
    EXPORT_PAGE_ROWS,
    BatchLedgerTotals,
    BatchTransferLine,
    ExportRow,
    TenantSummary,
)
from services.billing.domain.ids import BatchId, TenantId
from services.billing.domain.ledger import (
    AccountKind,
    RefType,
    StatementPage,
    TaskOutcome,
    Transfer,
    ensure_room_for_credit,
    page_size,
    parse_cursor,
    post_transfers,
    statement_page,
    topup_key,
    tracked_accounts,
    upfront_key,
)
from services.billing.domain.margins import MarginReport, margin_report
from services.billing.domain.packs import CreditPack, find_pack, packs_by_price
from services.billing.domain.payments import (
    CheckoutSession,
    EventOutcome,
    InvalidSignature,
    Payment,
    PaymentProvider,
    PaymentRefused,
    checkout_payment,
    parse_stripe_event,
)
from services.billing.domain.pricing import (
    DEFAULT_CREDIT_VALUE_USD_MICROS,
    MarginEstimate,
    ModelPrice,
    Quote,
    QuoteLine,
    ensure_affordable,
    ensure_quote_is_current,
    estimate_margin,
    quote,
)
from services.billing.domain.reconciliation import BatchOutcomeTotals, Discrepancy, find_discrepancies
from services.billing.domain.settlement import (
    BatchHold,
    OutcomeTally,
    outcome_transfer,
    release_transfer,
    settle,
    tally_outcomes,
)
from services.billing.domain.statements import Month, Statement, build_statement
from services.billing.domain.video_access import VideoAccess, optional_uuid, validated_access


class TaskOutcomeSource(Protocol):
    """Where settlement fetches outcomes it has not received as events (the batch service)."""

    async def terminal_outcomes(self, batch_id: BatchId) -> list[TaskOutcome]: ...


class BatchTotalsSource(Protocol):
    """Where reconciliation reads what every batch's task outcomes are worth (the batch service)."""

    async def batch_totals(self) -> dict[BatchId, BatchOutcomeTotals]: ...


@dataclass(frozen=True)
class ReconciliationReport:
    """Every discrepancy found, and how much was looked at."""

    discrepancies: list[Discrepancy]
    accounts_checked: int
    batches_checked: int


@dataclass(frozen=True)
class BatchLedgerPage:
    """A batch's totals and one page of its transfers ("" cursor on the last page)."""

    totals: BatchLedgerTotals
    transfers: list[BatchTransferLine]
    next_cursor: str


@dataclass(frozen=True)
class IssuedApiKey:
    """A key in clear, returned once."""

    api_key: str
    key_id: uuid.UUID


@dataclass(frozen=True)
class AuthenticatedKey:
    tenant_id: TenantId
    key_id: uuid.UUID


@dataclass(frozen=True)
class TopUpResult:
    balance: int
    replayed: bool


@dataclass(frozen=True)
class Balance:
    available_credits: int
    held_credits: int


@dataclass(frozen=True)
class PricedQuote:
    quote: Quote
    available_credits: int


@dataclass(frozen=True)
class Reservation:
    """The freeze of a batch as first recorded (replays return it unchanged)."""

    frozen_credits: int
    available_before: int
    available_after: int
    replayed: bool


# At most this many reservations share one transaction: bounds its arrays and the time the
# wallets stay locked.
DEFAULT_RESERVATION_GROUP_SIZE = 64


@dataclass(frozen=True)
class ReservationRequest:
    """One Reserve call waiting for its group (see `BillingHandlers.reserve`)."""

    tenant_id: TenantId
    batch_id: BatchId
    lines: tuple[QuoteLine, ...]


@dataclass(frozen=True)
class TaskCharge:
    credits: int
    replayed: bool


class StripeEventVerifier(Protocol):
    """Verifies a Stripe webhook delivery and decodes its event (InvalidSignature otherwise)."""

    def verify(self, payload: bytes, signature_header: str) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class PaymentResult:
    """The balance after a payment was credited (or found credited: `replayed`)."""

    balance: int
    credits: int
    replayed: bool


@dataclass(frozen=True)
class PaymentEventResult:
    """What one payment-provider delivery did."""

    event_id: str
    event_type: str
    outcome: EventOutcome
    tenant_id: TenantId | None = None
    credits: int = 0


class BillingHandlers:
    """The billing service layer; transports (gRPC, bus) call only these methods."""

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
        reservation_group_size: int = DEFAULT_RESERVATION_GROUP_SIZE,
    ) -> None:
        self._packs = dict(packs or {})
        self._credit_value_usd_micros = credit_value_usd_micros
        self._stripe_verifier = stripe_verifier
        self._repo = repository
        self._totals_source = totals_source
        self._prices = dict(price_list)
        self._outcome_source = outcome_source
        self._chunk_size = chunk_size
        self._clock = clock
        self._reservations: GroupCommitter[ReservationRequest, Reservation] = GroupCommitter(
            self._reserve_group, max_group_size=reservation_group_size, name="billing-reservations"
        )

    # Tenants and API keys.

    async def create_tenant(self, name: str) -> TenantId:
        """Creates a tenant with an empty available account."""
        name = name.strip()
        if not name:
            raise InvalidArgument("name is required", field="name")
        tenant_id = TenantId(uuid.uuid4())
        async with self._repo.transaction() as tx:
            await tx.insert_tenant(tenant_id, name)
        return tenant_id

    async def create_api_key(self, tenant_id: TenantId, api_key: str = "") -> IssuedApiKey:
        """Issues a random key, or registers `api_key` exactly (demo tenants); duplicates are refused."""
        if api_key:
            api_keys.ensure_registrable(api_key)
        else:
            api_key = api_keys.generate_api_key()
        key_id = uuid.uuid4()
        async with self._repo.transaction() as tx:
            if not await tx.tenant_exists(tenant_id):
                raise TenantNotFound(tenant_id)
            stored = await tx.insert_api_key(
                key_id, tenant_id, api_keys.hash_api_key(api_key), api_keys.key_prefix(api_key)
            )
        if not stored:
            raise ApiKeyAlreadyExists()
        return IssuedApiKey(api_key=api_key, key_id=key_id)

    async def authenticate_api_key(self, api_key: str) -> AuthenticatedKey:
        """The tenant of a valid key; InvalidApiKey when unknown or revoked."""
        if not api_key:
            raise InvalidApiKey()
        async with self._repo.transaction() as tx:
            record = await tx.find_api_key(api_keys.hash_api_key(api_key))
            if record is None or record.revoked:
                raise InvalidApiKey()
            now = self._clock()
            if api_keys.should_record_use(record.last_used_at, now):
                await tx.record_api_key_use(record.key_id, now)
        return AuthenticatedKey(tenant_id=record.tenant_id, key_id=record.key_id)

    async def list_api_keys(self, tenant_id: TenantId) -> list[api_keys.ApiKeyInfo]:
        """The tenant's keys (prefix and history only), oldest first."""
        async with self._repo.transaction() as tx:
            if not await tx.tenant_exists(tenant_id):
                raise TenantNotFound(tenant_id)
            return await tx.list_api_keys(tenant_id)

    async def get_api_key(self, tenant_id: TenantId, key_id: uuid.UUID) -> api_keys.ApiKeyInfo:
        """One of the tenant's keys; ApiKeyNotFound for another tenant's."""
        async with self._repo.transaction() as tx:
            info = await tx.get_api_key(key_id, tenant_id)
        if info is None:
            raise ApiKeyNotFound(key_id)
        return info

    async def revoke_api_key(self, tenant_id: TenantId | None, key_id: uuid.UUID) -> api_keys.ApiKeyInfo:
        """Revokes a key of `tenant_id` (any tenant's when None: operators); idempotent."""
        async with self._repo.transaction() as tx:
            if await tx.get_api_key(key_id, tenant_id) is None:
                raise ApiKeyNotFound(key_id)
            await tx.revoke_api_key(key_id, self._clock())
            revoked = await tx.get_api_key(key_id, tenant_id)
        assert revoked is not None  # the row exists: it was just read in this transaction
        return revoked

    async def create_admin_key(self, role: str, name: str) -> tuple[IssuedApiKey, api_keys.AdminRole]:
        """Issues an operator key with a role; the clear key is returned only here."""
        parsed_role = api_keys.parse_admin_role(role)
        name = name.strip()
        if len(name) > 200:
            raise InvalidArgument("name must be at most 200 characters", field="name")
        api_key = api_keys.generate_admin_key()
        key_id = uuid.uuid4()
        async with self._repo.transaction() as tx:
            await tx.insert_admin_key(
                key_id, api_keys.hash_api_key(api_key), api_keys.key_prefix(api_key), parsed_role, name
            )
        return IssuedApiKey(api_key=api_key, key_id=key_id), parsed_role

    async def authenticate_admin_key(self, api_key: str) -> api_keys.AdminKeyInfo:
        """The role of a valid operator key; InvalidApiKey when unknown or revoked."""
        if not api_key:
            raise InvalidApiKey()
        async with self._repo.transaction() as tx:
            info = await tx.find_admin_key(api_keys.hash_api_key(api_key))
            if info is None or info.revoked_at is not None:
                raise InvalidApiKey()
            now = self._clock()
            if api_keys.should_record_use(info.last_used_at, now):
                await tx.record_admin_key_use(info.key_id, now)
        return info

    async def revoke_admin_key(self, key_id: uuid.UUID) -> api_keys.AdminKeyInfo:
        """Revokes an operator key; idempotent."""
        async with self._repo.transaction() as tx:
            if await tx.get_admin_key(key_id) is None:
                raise ApiKeyNotFound(key_id)
            await tx.revoke_admin_key(key_id, self._clock())
            revoked = await tx.get_admin_key(key_id)
        assert revoked is not None  # the row exists: it was just read in this transaction
        return revoked

    async def list_admin_keys(self) -> list[api_keys.AdminKeyInfo]:
        """Every operator key, oldest first."""
        async with self._repo.transaction() as tx:
            return await tx.list_admin_keys()

    # Video access audit log.

    async def record_video_access(self, access: VideoAccess) -> int:
        """Appends one access attempt to the audit log; returns its id."""
        async with self._repo.transaction() as tx:
            return await tx.insert_video_access(validated_access(access))

    async def list_video_access(
        self, tenant_id: str, batch_id: str, cursor: str, limit: int
    ) -> tuple[list[VideoAccess], str]:
        """Attempts newest first, with the cursor of the next page ("" on the last)."""
        size = page_size(limit)
        before = parse_cursor(cursor)
        tenant_filter = optional_uuid(tenant_id, "tenant_id")
        batch_filter = optional_uuid(batch_id, "batch_id")
        async with self._repo.transaction() as tx:
            found = await tx.list_video_access(
                str(tenant_filter or ""), str(batch_filter or ""), before, size + 1
            )
        page = found[:size]
        next_cursor = str(page[-1].access_id) if len(found) > size else ""
        return page, next_cursor

    # Credits.

    async def top_up(self, tenant_id: TenantId, credits: int, reference: str) -> TopUpResult:
        """Grants credits once per reference; a replay returns the current balance."""
        if credits <= 0:
            raise InvalidArgument("credits must be positive", field="credits")
        if not reference:
            raise InvalidArgument("reference is required", field="reference")
        async with self._repo.transaction() as tx:
            available = await tx.lock_available(tenant_id)
            if available is None:
                raise TenantNotFound(tenant_id)
            transfer = Transfer(
                key=topup_key(tenant_id, reference),
                ref_type=RefType.TOPUP,
                ref_id=reference,
                tenant_id=tenant_id,
                batch_id=None,
                debit_account_id=await tx.system_account_id(AccountKind.GRANTS),
                credit_account_id=available.id,
                amount=credits,
            )
            inserted = await tx.insert_transfers([transfer])
            if transfer.key not in inserted:
                return TopUpResult(balance=available.balance, replayed=True)
            ensure_room_for_credit(available.balance, await tx.held_total(tenant_id), credits)
            posting = post_transfers([(inserted[transfer.key], transfer)], {available.id: available.balance})
            await tx.write_posting(posting)
        return TopUpResult(balance=posting.balances[available.id], replayed=False)

    async def get_balance(self, tenant_id: TenantId) -> Balance:
        async with self._repo.transaction() as tx:
            available = await tx.available(tenant_id)
            if available is None:
                raise TenantNotFound(tenant_id)
            held = await tx.held_total(tenant_id)
        return Balance(available_credits=available.balance, held_credits=held)

    async def list_ledger_entries(
        self, tenant_id: TenantId, batch_id: BatchId | None, cursor: str, limit: int
    ) -> StatementPage:
        """The tenant's available-balance changes, newest first."""
        size = page_size(limit)
        before = parse_cursor(cursor)
        async with self._repo.transaction() as tx:
            if await tx.available(tenant_id) is None:
                raise TenantNotFound(tenant_id)
            lines = await tx.statement(tenant_id, batch_id, before, size + 1)
        return statement_page(lines, size)

    # Pricing.

    def price_list(self) -> list[ModelPrice]:
        return [self._prices[model] for model in sorted(self._prices)]

    async def quote(self, tenant_id: TenantId | None, lines: Sequence[QuoteLine]) -> PricedQuote:
        """Prices lines without moving money; the tenant's balance is included when given."""
        priced = quote(lines, self._prices)
        available_credits = 0
        if tenant_id is not None:
            # One autocommit read, no transaction: a quote is on every create's path.
            available = await self._repo.available_balance(tenant_id)
            if available is None:
                raise TenantNotFound(tenant_id)
            available_credits = available
        return PricedQuote(quote=priced, available_credits=available_credits)

    # Batch money flows.

    async def reserve(
        self, tenant_id: TenantId, batch_id: BatchId, lines: Sequence[QuoteLine]
    ) -> Reservation:
        """Freezes price x items of a batch in its own hold account, once per batch.

        A replay is answered from the stored hold before re-pricing, so a price change after the
        first reservation never fails the batch service's recovery of that batch.

        Reservations are group-committed (`_reserve_group`): those that arrive while one
        reservation transaction runs share the next, each still refused or replayed on its own.
        """
        return await self._reservations.submit(ReservationRequest(tenant_id, batch_id, tuple(lines)))

    async def reserve_many(self, requests: Sequence[ReservationRequest]) -> list[Reservation | ServiceError]:
        """`reserve` of several batches, answered in order: each its reservation or its own refusal.

        They join the reservation group together. A failure that is not a refusal (the database
        is down) fails the whole call, as it would fail each Reserve.
        """
        outcomes: list[Reservation | ServiceError] = []
        for outcome in await self._reservations.submit_many(requests):
            if isinstance(outcome, BaseException) and not isinstance(outcome, ServiceError):
                raise outcome
            outcomes.append(outcome)
        return outcomes

    async def _reserve_group(
        self, requests: Sequence[ReservationRequest]
    ) -> list[Reservation | BaseException]:
        """One transaction for a group of reservations, in request order (the group commit).

        Four round trips on a raw connection whatever the group's size, the wallets locked for the
        last two: the hold accounts of the group's batches are created first (a concurrent Reserve
        of one of them elsewhere waits on its unique index, then replays), then each request is
        priced and checked against what the requests before it left in its wallet, so each is
        refused (402) exactly when the remainder cannot cover it, and the accepted ones are posted
        by one statement. A refused request's hold account is deleted again before the commit.
        """
        outcomes: list[Reservation | BaseException | None] = [None] * len(requests)
        first_of_batch: dict[BatchId, int] = {}
        for index, request in enumerate(requests):
            first_of_batch.setdefault(request.batch_id, index)
        planned: list[PlannedReservation] = []
        async with self._repo.reservation() as tx:
            created = await tx.create_hold_accounts(
                {batch_id: requests[index].tenant_id for batch_id, index in first_of_batch.items()}
            )
            wallets = (
                await tx.lock_wallets(requests[first_of_batch[batch_id]].tenant_id for batch_id in created)
                if created
                else {}
            )
            balances = {tenant_id: wallet.balance for tenant_id, wallet in wallets.items()}
            refused_accounts: list[int] = []
            for batch_id, hold_account_id in sorted(
                created.items(), key=lambda pair: first_of_batch[pair[0]]
            ):
                index = first_of_batch[batch_id]
                request = requests[index]
                wallet = wallets.get(request.tenant_id)
                try:
                    if wallet is None:
                        raise TenantNotFound(request.tenant_id)
                    item = self._plan_reservation(
                        request, hold_account_id, wallet.id, balances[request.tenant_id]
                    )
                except ServiceError as refused:
                    outcomes[index] = refused
                    refused_accounts.append(hold_account_id)
                    continue
                balances[request.tenant_id] = item.hold.available_after
                planned.append(item)
            await tx.delete_accounts(refused_accounts)
            opening = {wallet.id: wallet.balance for wallet in wallets.values()}
            opening |= {item.hold.hold_account_id: 0 for item in planned}
            posting = post_transfers(enumerate(item.transfer for item in planned), opening)
            if await tx.post_reservations(planned, posting) != len(planned):
                raise LedgerInvariantViolated("a batch was frozen without a batch hold")
        billing_metrics.record_transfers([item.transfer for item in planned])
        for item in planned:
            outcomes[first_of_batch[item.hold.batch_id]] = Reservation(
                frozen_credits=item.hold.frozen,
                available_before=item.hold.available_before,
                available_after=item.hold.available_after,
                replayed=False,
            )
        # The rest are replays: the batch's hold account existed (so did its hold: both are written
        # by one transaction, which has committed, since the insert above waited for it), or it was
        # asked twice in this group, or there is no such tenant.
        for index, request in enumerate(requests):
            if outcomes[index] is None:
                try:
                    outcomes[index] = await self._replay_reservation(request.tenant_id, request.batch_id)
                except ServiceError as refused:
                    outcomes[index] = refused
        assert all(outcome is not None for outcome in outcomes), "every request has its outcome"
        return [outcome for outcome in outcomes if outcome is not None]

    def _plan_reservation(
        self, request: ReservationRequest, hold_account_id: int, wallet_id: int, available: int
    ) -> PlannedReservation:
        """Prices a reservation and checks it against `available` (raises StaleQuote, UnknownModel,
        InsufficientCredits...); no I/O."""
        priced = quote(request.lines, self._prices)
        ensure_quote_is_current(request.lines, priced)
        ensure_affordable(priced.total, available)
        transfer = Transfer(
            key=upfront_key(request.batch_id),
            ref_type=RefType.BATCH_UPFRONT,
            ref_id=str(request.batch_id),
            tenant_id=request.tenant_id,
            batch_id=request.batch_id,
            debit_account_id=wallet_id,
            credit_account_id=hold_account_id,
            amount=priced.total,
        )
        per_model = priced.per_model()
        hold = BatchHold(
            batch_id=request.batch_id,
            tenant_id=request.tenant_id,
            hold_account_id=hold_account_id,
            item_count=priced.item_count,
            frozen=priced.total,
            available_before=available,
            available_after=available - priced.total,
            unit_prices={model: line.unit_price for (model, _), line in per_model.items()},
            line_prices=frozenset((line.model, line.unit_price) for line in per_model.values()),
        )
        return PlannedReservation(
            transfer=transfer,
            hold=hold,
            lines=tuple(per_model.values()),
            provider_costs={model: self._prices[model].provider_cost_usd_micros for model, _ in per_model},
        )

    async def _replay_reservation(self, tenant_id: TenantId, batch_id: BatchId) -> Reservation:
        async with self._repo.transaction() as tx:
            if await tx.available(tenant_id) is None:
                raise TenantNotFound(tenant_id)
            reserved = await tx.find_hold(batch_id)
        if reserved is None:
            raise LedgerInvariantViolated(f"batch {batch_id} has a hold account but no batch hold")
        return _replayed(reserved, tenant_id)

    async def charge_task(self, outcome: TaskOutcome) -> TaskCharge:
        """Captures or refunds one task (a chunk of one); a repeat returns the first effect."""
        applied = await self.apply_task_outcomes([outcome])
        if outcome.key in applied:
            return TaskCharge(credits=applied[outcome.key], replayed=False)
        async with self._repo.transaction() as tx:
            existing = await tx.find_transfer(outcome.key)
        if existing is None:
            raise LedgerInvariantViolated(f"task outcome {outcome.key} neither applied nor stored")
        if existing.ref_type is not outcome.kind.ref_type:
            raise OutcomeConflict(outcome.task_id, existing.ref_type.value)
        return TaskCharge(credits=existing.amount, replayed=True)

    async def apply_task_outcomes(self, outcomes: Sequence[TaskOutcome]) -> dict[str, int]:
        """Applies task outcomes, `chunk_size` per transaction; returns {key: credits} of fresh ones.

        Outcomes already applied (earlier, or repeated within `outcomes`) are skipped by their key.
        """
        first_by_key: dict[str, TaskOutcome] = {}
        for outcome in outcomes:
            first_by_key.setdefault(outcome.key, outcome)
        unique = list(first_by_key.values())
        applied: dict[str, int] = {}
        for start in range(0, len(unique), self._chunk_size):
            applied |= await self._apply_chunk(unique[start : start + self._chunk_size])
        return applied

    async def _apply_chunk(self, outcomes: Sequence[TaskOutcome]) -> dict[str, int]:
        async with self._repo.transaction() as tx:
            holds = await tx.lock_holds(outcome.batch_id for outcome in outcomes)
            for outcome in outcomes:
                if outcome.batch_id not in holds:
                    raise HoldNotFound(outcome.batch_id)
            revenue = await tx.system_account_id(AccountKind.REVENUE)
            available = await tx.available_account_ids({hold.tenant_id for hold in holds.values()})
            transfers = [
                outcome_transfer(
                    outcome,
                    holds[outcome.batch_id],
                    revenue_account_id=revenue,
                    available_account_id=available[holds[outcome.batch_id].tenant_id],
                )
                for outcome in outcomes
            ]
            inserted = await tx.insert_transfers(transfers)
            if not inserted:
                return {}
            fresh_by_batch: dict[BatchId, list[TaskOutcome]] = defaultdict(list)
            for outcome in outcomes:
                if outcome.key in inserted:
                    fresh_by_batch[outcome.batch_id].append(outcome)
            tallies: dict[BatchId, OutcomeTally] = {
                batch_id: tally_outcomes(holds[batch_id], fresh) for batch_id, fresh in fresh_by_batch.items()
            }
            fresh_transfers = [(inserted[t.key], t) for t in transfers if t.key in inserted]
            await self._post(tx, fresh_transfers, revenue)
            await tx.add_outcome_tallies(tallies)
        billing_metrics.record_transfers(transfer for _, transfer in fresh_transfers)
        return {transfer.key: transfer.amount for _, transfer in fresh_transfers}

    async def settle(self, batch_id: BatchId) -> BatchHold:
        """Releases the remainder of a batch hold once every task outcome is applied.

        Missing outcomes (`batch.finished` overtook them) are pulled from the batch service and
        applied (keyed as usual), then the settlement is tried once more; if some tasks are still
        not terminal it is refused (OutcomesMissing), never guessed.
        """
        outcome = (await self.settle_batches([batch_id]))[0]
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def settle_batches(self, batch_ids: Sequence[BatchId]) -> list[BatchHold | ServiceError]:
        """`settle` of several batches: those whose outcomes are all applied in one transaction,
        each refused on its own (HoldNotFound, OutcomesMissing...). Answers in the order asked."""
        ordered = list(dict.fromkeys(batch_ids))
        outcomes = await self._settle_applied(ordered)
        if self._outcome_source is not None:
            for batch_id in ordered:
                if isinstance(outcomes[batch_id], OutcomesMissing):
                    await self.apply_task_outcomes(await self._outcome_source.terminal_outcomes(batch_id))
                    outcomes |= await self._settle_applied([batch_id])
        return [outcomes[batch_id] for batch_id in batch_ids]

    async def _settle_applied(self, batch_ids: Sequence[BatchId]) -> dict[BatchId, BatchHold | ServiceError]:
        # One transaction for all of them, the holds locked first: the usual case (every outcome
        # applied) needs no read beforehand, and a refusal writes nothing for its batch.
        outcomes: dict[BatchId, BatchHold | ServiceError] = {}
        async with self._repo.transaction() as tx:
            holds = await tx.lock_holds(batch_ids)
            ready: list[BatchHold] = []
            for batch_id in batch_ids:
                hold = holds.get(batch_id)
                if hold is None:
                    outcomes[batch_id] = HoldNotFound(batch_id)
                elif hold.is_settled:
                    outcomes[batch_id] = hold
                elif hold.outcomes_applied < hold.item_count:
                    outcomes[batch_id] = OutcomesMissing(batch_id, hold.outcomes_applied, hold.item_count)
                else:
                    ready.append(hold)
            if not ready:
                return outcomes
            available_ids = await tx.available_account_ids({hold.tenant_id for hold in ready})
            balances = await tx.lock_balances(
                [hold.hold_account_id for hold in ready] + list(available_ids.values())
            )
            transfers: list[Transfer] = []
            settled: list[BatchHold] = []
            for hold in ready:
                try:
                    settlement = settle(hold, balances[hold.hold_account_id])
                except ServiceError as refused:
                    outcomes[hold.batch_id] = refused
                    continue
                if settlement.remainder > 0:
                    transfers.append(
                        release_transfer(
                            hold, settlement.remainder, available_account_id=available_ids[hold.tenant_id]
                        )
                    )
                settled.append(
                    replace(
                        hold,
                        released=settlement.remainder,
                        settlement_status=settlement.status,
                        settled_at=self._clock(),
                    )
                )
            if transfers:
                inserted = await tx.insert_transfers(transfers)
                if len(inserted) != len(transfers):
                    raise LedgerInvariantViolated("a batch was released but is not settled")
                await tx.write_posting(
                    post_transfers([(inserted[transfer.key], transfer) for transfer in transfers], balances)
                )
            await tx.record_settlements(settled)
            await tx.add_events([batch_settled_event(hold) for hold in settled])
        billing_metrics.record_transfers(transfers)
        outcomes |= {hold.batch_id: hold for hold in settled}
        return outcomes

    async def get_batch_settlement(self, batch_id: BatchId) -> BatchHold:
        async with self._repo.transaction() as tx:
            hold = await tx.find_hold(batch_id)
        if hold is None:
            raise SettlementNotFound(batch_id)
        return hold

    # Packs, payments and statements.

    @property
    def credit_value_usd_micros(self) -> int:
        """What one credit sells for (revenue in margin reports)."""
        return self._credit_value_usd_micros

    def packs(self) -> list[CreditPack]:
        """The pack catalog, cheapest first."""
        return packs_by_price(self._packs)

    async def record_invoice_payment(
        self, tenant_id: TenantId, reference: str, pack_id: str, credits: int, amount_usd_cents: int
    ) -> PaymentResult:
        """Credits an offline payment once per invoice reference (a pack, or custom credits and amount).

        A replayed reference returns the first payment's credits, whatever the replay asked for.
        """
        if pack_id:
            if credits or amount_usd_cents:
                raise InvalidArgument(
                    "give a pack_id, or credits and amount_usd_cents, not both", field="pack_id"
                )
            pack = find_pack(self._packs, pack_id)
            credits, amount_usd_cents = pack.credits, pack.price_usd_cents
        payment = Payment(
            tenant_id=tenant_id,
            provider=PaymentProvider.INVOICE,
            reference=reference.strip(),
            credits=credits,
            amount_usd_cents=amount_usd_cents,
            pack_id=pack_id or None,
        )
        async with self._repo.transaction() as tx:
            return await self._credit_payment(tx, payment)

    async def handle_stripe_event(self, payload: bytes, signature_header: str) -> PaymentEventResult:
        """Verifies and applies one Stripe webhook delivery; every delivery is recorded.

        Idempotent per event id (a unique key on recorded events) and per payment (a unique key on
        payments, and the purchase transfer's key). An unverified delivery raises InvalidSignature.
        """
        if self._stripe_verifier is None:
            raise InvalidSignature("Stripe webhooks are not configured")
        try:
            event = parse_stripe_event(self._stripe_verifier.verify(payload, signature_header))
        except InvalidArgument as refusal:
            rejected = PaymentEventRecord(
                PaymentProvider.STRIPE, None, "", EventOutcome.REJECTED, refusal.message
            )
            async with self._repo.transaction() as tx:
                await tx.insert_payment_event(rejected)
            raise
        record = PaymentEventRecord(
            PaymentProvider.STRIPE, event.event_id, event.event_type, EventOutcome.IGNORED
        )
        async with self._repo.transaction() as tx:
            if not await tx.insert_payment_event(record):
                repeat = replace(
                    record, event_id=None, outcome=EventOutcome.DUPLICATE_EVENT, detail=event.event_id
                )
                await tx.insert_payment_event(repeat)
                return PaymentEventResult(event.event_id, event.event_type, EventOutcome.DUPLICATE_EVENT)
            if event.checkout is None:
                return PaymentEventResult(event.event_id, event.event_type, EventOutcome.IGNORED)
            record, credited = await self._apply_checkout(tx, record, event.checkout)
            await tx.set_payment_event_outcome(record)
        return PaymentEventResult(
            event.event_id, event.event_type, record.outcome, record.tenant_id, credited
        )

    async def _apply_checkout(
        self, tx: LedgerTransaction, record: PaymentEventRecord, session: CheckoutSession
    ) -> tuple[PaymentEventRecord, int]:
        """What a checkout session event did, and the credits it added (0 unless freshly credited)."""
        if session.payment_status != "paid":
            return replace(record, outcome=EventOutcome.NOT_PAID, payment_reference=session.session_id), 0
        try:
            payment = checkout_payment(session, self._packs.get(session.metadata.get("pack_id", "")))
            if not await tx.tenant_exists(payment.tenant_id):
                raise PaymentRefused(f"checkout session {session.session_id} names an unknown tenant")
        except PaymentRefused as refusal:
            refused = replace(
                record,
                outcome=EventOutcome.REFUSED,
                detail=str(refusal),
                payment_reference=session.session_id,
            )
            return refused, 0
        credited = await self._credit_payment(tx, payment)
        applied = replace(
            record,
            outcome=EventOutcome.DUPLICATE_PAYMENT if credited.replayed else EventOutcome.CREDITED,
            tenant_id=payment.tenant_id,
            payment_reference=payment.reference,
        )
        return applied, credited.credits

    async def _credit_payment(self, tx: LedgerTransaction, payment: Payment) -> PaymentResult:
        """Moves a payment's credits `payments -> available` once; a repeat returns the balance as is."""
        available = await tx.lock_available(payment.tenant_id)
        if available is None:
            raise TenantNotFound(payment.tenant_id)
        payment_id = await tx.insert_payment(payment)
        if payment_id is None:
            return PaymentResult(balance=available.balance, credits=0, replayed=True)
        transfer = Transfer(
            key=payment.key,
            ref_type=RefType.PURCHASE,
            ref_id=payment.ref_id,
            tenant_id=payment.tenant_id,
            batch_id=None,
            debit_account_id=await tx.system_account_id(AccountKind.PAYMENTS),
            credit_account_id=available.id,
            amount=payment.credits,
        )
        inserted = await tx.insert_transfers([transfer])
        if transfer.key not in inserted:
            raise LedgerInvariantViolated(f"payment {payment.key} was credited without a payment record")
        ensure_room_for_credit(available.balance, await tx.held_total(payment.tenant_id), payment.credits)
        posting = post_transfers([(inserted[transfer.key], transfer)], {available.id: available.balance})
        await tx.write_posting(posting)
        await tx.link_payment_transfer(payment_id, inserted[transfer.key])
        return PaymentResult(balance=posting.balances[available.id], credits=payment.credits, replayed=False)

    async def statement(self, tenant_id: TenantId, month: Month) -> Statement:
        """The tenant's available balance over one UTC month, derived from its ledger entries."""
        async with self._repo.transaction() as tx:
            available = await tx.available(tenant_id)
            if available is None:
                raise TenantNotFound(tenant_id)
            before, during = await tx.available_movements(available.id, month.start, month.end)
            models = await tx.model_usage(tenant_id, month.start, month.end)
        opening = sum(before.values())
        return build_statement(
            month,
            opening_balance=opening,
            movements=during,
            closing_balance=opening + sum(during.values()),
            lifetime_purchased=before.get(RefType.PURCHASE, 0) + during.get(RefType.PURCHASE, 0),
            lifetime_granted=before.get(RefType.TOPUP, 0) + during.get(RefType.TOPUP, 0),
            models=models,
        )

    async def monthly_margins(self, month: Month) -> MarginReport:
        """Revenue of the month's captures against the provider cost frozen with their batches."""
        async with self._repo.transaction() as tx:
            volumes = await tx.captured_volumes(month.start, month.end)
        return margin_report(volumes, self._credit_value_usd_micros)

    # Finance.

    async def list_tenants(self, cursor: str, limit: int) -> tuple[list[TenantSummary], str]:
        """Tenants with their balances, oldest first, and the next cursor ("" on the last page)."""
        size = page_size(limit)
        async with self._repo.transaction() as tx:
            found = await tx.tenant_summaries(parse_cursor(cursor), size + 1)
        if len(found) <= size:
            return found, ""
        return found[:size], str(found[size - 1].position)

    async def batch_ledger(self, batch_id: BatchId, cursor: str, limit: int) -> BatchLedgerPage:
        """Totals of a batch's transfers (always whole) and one page of them in order."""
        size = page_size(limit)
        async with self._repo.transaction() as tx:
            totals = await tx.batch_ledger_totals(batch_id)
            if totals is None:
                raise SettlementNotFound(batch_id)
            lines = await tx.batch_transfers(batch_id, parse_cursor(cursor), size + 1)
        more = len(lines) > size
        lines = lines[:size]
        return BatchLedgerPage(totals, lines, str(lines[-1].transfer_id) if more and lines else "")

    def estimate_margin(self, delivered: Mapping[str, int]) -> MarginEstimate:
        """Revenue, provider cost and margin of `{model: videos delivered}` at today's prices."""
        return estimate_margin(delivered, self._prices, self._credit_value_usd_micros)

    async def reconcile(self) -> ReconciliationReport:
        """Checks I1-I3 over all billing data, and against the batch service's outcomes when wired."""
        async with self._repo.transaction() as tx:
            audit = await tx.ledger_audit()
        # Read after the audit: a hold settled in the audit had all its tasks terminal before, so
        # the totals read now are final for it. Holds still pending are not compared.
        totals = await self._totals_source.batch_totals() if self._totals_source is not None else None
        reserved_since: frozenset[BatchId] = frozenset()
        if totals is not None:
            audited = {hold.batch_id for hold in audit.holds}
            unheld = [batch_id for batch_id in totals if batch_id not in audited]
            if unheld:
                # Batches accepted while the audit ran have their hold by now.
                async with self._repo.transaction() as tx:
                    reserved_since = frozenset(await tx.existing_holds(unheld))
        return ReconciliationReport(
            discrepancies=find_discrepancies(audit, totals, reserved_since=reserved_since),
            accounts_checked=len(audit.accounts),
            batches_checked=len(audit.holds),
        )

    async def export_ledger(
        self, tenant_id: TenantId | None, created_from: datetime | None, created_to: datetime | None
    ) -> AsyncIterator[ExportRow]:
        """Ledger entries in id order, read page by page (one short transaction each)."""
        if tenant_id is not None:
            async with self._repo.transaction() as tx:
                if await tx.available(tenant_id) is None:
                    raise TenantNotFound(tenant_id)
        after = 0
        while True:
            async with self._repo.transaction() as tx:
                rows = await tx.export_rows(tenant_id, created_from, created_to, after, EXPORT_PAGE_ROWS)
            for row in rows:
                yield row
            if len(rows) < EXPORT_PAGE_ROWS:
                return
            after = rows[-1].entry_id

    async def _post(self, tx: LedgerTransaction, transfers: list[tuple[int, Transfer]], revenue: int) -> None:
        """Locks the tenant accounts the transfers touch (ascending id) and posts the transfers."""
        grants = await tx.system_account_id(AccountKind.GRANTS)
        balances = await tx.lock_balances(tracked_accounts((t for _, t in transfers), [revenue, grants]))
        await tx.write_posting(post_transfers(transfers, balances))


def _replayed(hold: BatchHold, tenant_id: TenantId) -> Reservation:
    if hold.tenant_id != tenant_id:
        raise BatchReservedByAnotherTenant(hold.batch_id)
    return Reservation(
        frozen_credits=hold.frozen,
        available_before=hold.available_before,
        available_after=hold.available_after,
        replayed=True,
    )
