"""Billing over gRPC (BillingService.Quote and ReserveMany), in the terms of the batch domain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

import grpc
from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from libs.expiring_cache import ExpiringCache
from libs.field_mapping import from_fields
from libs.group_commit import GroupCommitter
from libs.invalidations import InvalidatedCache, InvalidationFeed, InvalidationKind
from libs.rpc.errors import RemoteError, as_service_error, item_refusal, remote_error
from services.batch.domain.batch import (
    NO_TERMS,
    BatchId,
    QuoteLine,
    RequestedLine,
    Reservation,
    ReservationTerms,
    StoredQuote,
    TenantId,
)
from services.batch.domain.errors import (
    BillingUnavailable,
    BudgetExceeded,
    DebtOutstanding,
    InsufficientCredits,
    ModelUnavailable,
    PriceChanged,
    QuoteNotFound,
    QuoteRefused,
)
from services.batch.domain.generation import options_of_key

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# How long billing's price for a (tenant, model, duration) is reused without asking again.
QUOTE_MEMO_SECONDS = 1.0
QUOTE_MEMO_ENTRIES = 10_000
# At most this many reservations share one ReserveMany call.
RESERVE_GROUP_SIZE = 64


@dataclass(frozen=True)
class _Reserve:
    """One reservation waiting for its ReserveMany call."""

    tenant_id: TenantId
    batch_id: BatchId
    lines: tuple[QuoteLine, ...]
    terms: ReservationTerms = NO_TERMS


def _reserve_request(item: _Reserve) -> billing_pb2.ReserveRequest:
    return billing_pb2.ReserveRequest(
        tenant_id=str(item.tenant_id),
        batch_id=str(item.batch_id),
        lines=_billing_lines(item.lines),
        api_key_id=item.terms.api_key_id,
        project=item.terms.project,
        quote_id=item.terms.quote_id,
        fingerprint=item.terms.fingerprint,
    )


def _billing_lines(lines: Sequence[QuoteLine]) -> list[billing_pb2.QuoteLine]:
    return [from_fields(billing_pb2.QuoteLine, line, options=_price_options(line.options)) for line in lines]


def _price_options(key: str) -> list[billing_pb2.PriceOption]:
    """A line's stored options key as billing's priced options."""
    return [billing_pb2.PriceOption(name=name, value=value) for name, value in options_of_key(key)]


def _reservation(answer: billing_pb2.ReserveResponse) -> Reservation:
    return Reservation(frozen_credits=answer.frozen_credits, available_before=answer.available_before)


def _int_detail(details: dict[str, str], key: str, default: int) -> int:
    try:
        return int(details[key])
    except (KeyError, ValueError):
        return default


class GrpcBilling:
    """The `Billing` port on a gRPC channel; refusals come back as domain errors."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        deadline_seconds: float,
        reserve_group_size: int = RESERVE_GROUP_SIZE,
    ) -> None:
        self._stub = billing_pb2_grpc.BillingServiceStub(channel)
        self._deadline = deadline_seconds
        self._reservations: GroupCommitter[_Reserve, Reservation] = GroupCommitter(
            self._reserve_group, max_group_size=reserve_group_size, name="billing-reserve-calls"
        )

    async def quote(self, tenant_id: TenantId, lines: Sequence[RequestedLine]) -> list[QuoteLine]:
        """Prices the lines; an unknown model comes back as billing's INVALID_ARGUMENT, unchanged."""
        request = billing_pb2.QuoteRequest(
            tenant_id=str(tenant_id),
            lines=[
                billing_pb2.QuoteLine(
                    model=line.model,
                    count=line.count,
                    duration_seconds=line.duration_seconds,
                    options=_price_options(line.options),
                )
                for line in lines
            ],
        )
        try:
            response = await self._stub.Quote(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        # Billing answers the options it priced in its own form; the line keeps the stored key.
        return [
            from_fields(QuoteLine, line, options=asked.options)
            for line, asked in zip(response.lines, lines, strict=True)
        ]

    async def reserve(
        self,
        tenant_id: TenantId,
        batch_id: BatchId,
        lines: Sequence[QuoteLine],
        terms: ReservationTerms = NO_TERMS,
    ) -> Reservation:
        """Freezes the batch's price; idempotent on batch_id, so a repeated call is safe.

        Concurrent reservations share one ReserveMany call (each still decided on its own): the
        creates of a busy tenant cost one round trip to billing per group, not one each.
        """
        return await self._reservations.submit(_Reserve(tenant_id, batch_id, tuple(lines), terms))

    async def create_quote(
        self, tenant_id: TenantId, lines: Sequence[QuoteLine], fingerprint: str, api_key_id: str
    ) -> StoredQuote:
        """Billing's stored quote of priced lines (its own prices, in the same order)."""
        request = billing_pb2.CreateQuoteRequest(
            tenant_id=str(tenant_id),
            lines=_billing_lines(lines),
            fingerprint=fingerprint,
            api_key_id=api_key_id,
        )
        try:
            stored = await self._stub.CreateQuote(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            raise self._translate(error) from None
        return _stored_quote(stored, lines)

    async def stored_quote(
        self, tenant_id: TenantId, quote_id: str, asked: Sequence[RequestedLine]
    ) -> StoredQuote:
        """One of the tenant's quotes; QuoteNotFound for an unknown one."""
        request = billing_pb2.GetQuoteRequest(tenant_id=str(tenant_id), quote_id=quote_id)
        try:
            stored = await self._stub.GetQuote(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                raise QuoteNotFound("quote not found", quote_id=quote_id) from None
            raise self._translate(error) from None
        return _stored_quote(stored, asked)

    async def _reserve_group(self, group: Sequence[_Reserve]) -> list[Reservation | BaseException]:
        request = billing_pb2.ReserveManyRequest(reservations=[_reserve_request(item) for item in group])
        try:
            response = await self._stub.ReserveMany(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                # A billing of the previous release (rolling deploy): one Reserve each.
                return list(await asyncio.gather(*map(self._reserve_one, group), return_exceptions=True))
            raise self._translate(error) from None
        outcomes: list[Reservation | BaseException] = []
        for item, outcome in zip(group, response.outcomes, strict=True):
            if outcome.HasField("refused"):
                refused = outcome.refused
                decoded = item_refusal(refused.code, refused.reason, refused.message, dict(refused.details))
                outcomes.append(self._refusal(item, decoded))
            else:
                outcomes.append(_reservation(outcome.reserved))
        return outcomes

    async def _reserve_one(self, item: _Reserve) -> Reservation:
        try:
            response = await self._stub.Reserve(_reserve_request(item), timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise self._translate(error) from None
            raise self._refusal(item, remote_error(error)) from None
        return _reservation(response)

    @staticmethod
    def _refusal(item: _Reserve, decoded: RemoteError) -> Exception:
        """A refused reservation in the batch domain's terms."""
        if decoded.reason == InsufficientCredits.reason:
            required = sum(line.count * line.unit_price for line in item.lines)
            return InsufficientCredits(
                _int_detail(decoded.details, "required_credits", required),
                _int_detail(decoded.details, "available_credits", 0),
            )
        if decoded.reason == PriceChanged.reason:
            return PriceChanged(decoded.message, **decoded.details)
        if decoded.reason == BudgetExceeded.reason:
            details = dict(decoded.details)
            required = _int_detail(details, "required_credits", 0)
            remaining = _int_detail(details, "remaining_credits", 0)
            for known in ("required_credits", "remaining_credits", "period_end"):
                details.pop(known, None)
            return BudgetExceeded(required, remaining, decoded.details.get("period_end", ""), **details)
        if decoded.reason == DebtOutstanding.reason:
            required = sum(line.count * line.unit_price for line in item.lines)
            return DebtOutstanding(
                _int_detail(decoded.details, "debt_credits", 0),
                _int_detail(decoded.details, "required_credits", required),
            )
        if decoded.reason in QuoteRefused.MESSAGES:
            return QuoteRefused(decoded.reason, **decoded.details)
        if decoded.code in _UNREACHABLE:
            return BillingUnavailable("billing is unavailable; retry")
        return _refused(decoded)

    @staticmethod
    def _translate(error: grpc.aio.AioRpcError) -> Exception:
        if error.code() in _UNREACHABLE:
            return BillingUnavailable("billing is unavailable; retry")
        return _refused(remote_error(error))


def _stored_quote(
    stored: billing_pb2.StoredQuote, asked: Sequence[RequestedLine] | Sequence[QuoteLine]
) -> StoredQuote:
    """Billing's quote in our terms; each line keeps the options key of the line asked at its place
    (billing answers in request order; a quote of other lines has another count of them)."""
    keys = [line.options for line in asked]
    if len(keys) != len(stored.lines):
        keys = [""] * len(stored.lines)
    return StoredQuote(
        quote_id=stored.quote_id,
        lines=tuple(
            from_fields(QuoteLine, line, options=key) for line, key in zip(stored.lines, keys, strict=True)
        ),
        fingerprint=stored.fingerprint,
        expires_at=stored.expires_at.ToDatetime(tzinfo=UTC),
        batch_id=stored.batch_id,
    )


def _refused(decoded: RemoteError) -> Exception:
    """Billing's refusal as ours; its unknown model as `ModelUnavailable`, same message and details.

    Billing's UnknownModel is the INVALID_ARGUMENT whose only detail is the `model`; its other
    refusals of a line (a count that is not positive) name the model too, but with a `field`.
    """
    if decoded.code is grpc.StatusCode.INVALID_ARGUMENT and set(decoded.details) == {"model"}:
        return ModelUnavailable(decoded.message, **decoded.details)
    return as_service_error(decoded)


class MemoizedQuotes:
    """The `Billing` port with billing's quotes remembered for `ttl_seconds` per (tenant, model,
    requested duration): a busy tenant's creates cost one Quote call a second, not one each.

    Safe because Reserve re-prices every line and refuses a quoted price that is not today's
    (stale_quote), so a remembered price can delay a price change by at most `ttl_seconds`, never
    freeze a wrong amount; a stale_quote answer also forgets everything remembered. Only
    successful answers are remembered: an unknown model or tenant is asked about every time.
    With a `feed` (billing's invalidation stream, ADR-130), prices are remembered only while it is
    live and forgotten as soon as a billing process announces a price list.
    """

    def __init__(
        self,
        billing: GrpcBilling,
        *,
        ttl_seconds: float = QUOTE_MEMO_SECONDS,
        max_entries: int = QUOTE_MEMO_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        feed: InvalidationFeed | None = None,
    ) -> None:
        self._billing = billing
        # (tenant, model, requested duration, options) -> (unit price, duration priced).
        # A `prices` invalidation names no subject: it empties the memo.
        self._prices = InvalidatedCache(
            ExpiringCache[tuple[TenantId, str, int, str], tuple[int, int]](ttl_seconds, max_entries, clock),
            feed,
            InvalidationKind.PRICES,
            lambda _: "",
        )

    async def quote(self, tenant_id: TenantId, lines: Sequence[RequestedLine]) -> list[QuoteLine]:
        """Billing's quote, from memory when every line's price was learnt in the last `ttl_seconds`."""
        remembered: list[QuoteLine] = []
        for asked in lines:
            price = self._prices.get((tenant_id, asked.model, asked.duration_seconds, asked.options))
            if price is None:
                break
            remembered.append(
                QuoteLine(
                    model=asked.model,
                    count=asked.count,
                    unit_price=price[0],
                    duration_seconds=price[1],
                    options=asked.options,
                )
            )
        else:
            return remembered
        ticket = self._prices.ticket()
        priced = await self._billing.quote(tenant_id, lines)
        for asked, line in zip(lines, priced, strict=True):
            key = (tenant_id, asked.model, asked.duration_seconds, asked.options)
            self._prices.put(key, (line.unit_price, line.duration_seconds), ticket)
        return priced

    async def reserve(
        self,
        tenant_id: TenantId,
        batch_id: BatchId,
        lines: Sequence[QuoteLine],
        terms: ReservationTerms = NO_TERMS,
    ) -> Reservation:
        """`GrpcBilling.reserve`; a PriceChanged refusal forgets every remembered price."""
        try:
            return await self._billing.reserve(tenant_id, batch_id, lines, terms)
        except PriceChanged:
            self._prices.clear()
            raise

    async def create_quote(
        self, tenant_id: TenantId, lines: Sequence[QuoteLine], fingerprint: str, api_key_id: str
    ) -> StoredQuote:
        """`GrpcBilling.create_quote` (a stored quote is never remembered here)."""
        return await self._billing.create_quote(tenant_id, lines, fingerprint, api_key_id)

    async def stored_quote(
        self, tenant_id: TenantId, quote_id: str, asked: Sequence[RequestedLine]
    ) -> StoredQuote:
        """`GrpcBilling.stored_quote`."""
        return await self._billing.stored_quote(tenant_id, quote_id, asked)
