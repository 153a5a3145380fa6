"""gRPC calls of prices, quotes and reservations."""

# Method names are fixed by the generated gRPC base class.
# ruff: noqa: N802

from __future__ import annotations

from collections.abc import Iterable

from reelbatch.proto.billing.v1 import billing_pb2

from libs.errors import InvalidArgument, ServiceError
from libs.field_mapping import from_fields
from libs.rpc.errors import status_code_for
from services.billing.domain.budgets import MAX_PROJECT_CHARS, Attribution
from services.billing.domain.ids import parse_batch_id, parse_tenant_id
from services.billing.domain.pricing import ModelCapabilities, QuoteLine
from services.billing.entrypoints.rpc.base import BillingRpcs, Context
from services.billing.use_cases.reservations import Reservation, ReservationRequest
from services.billing.use_cases.spend_control import parse_uuid


class ReservationRpcs(BillingRpcs):
    """GetPricing, Quote, Reserve and ReserveMany."""

    async def GetPricing(
        self, request: billing_pb2.GetPricingRequest, context: Context
    ) -> billing_pb2.GetPricingResponse:
        return billing_pb2.GetPricingResponse(
            models=[
                from_fields(
                    billing_pb2.ModelPrice,
                    price,
                    credits_per_second=price.credits_per_second or 0,
                    min_seconds=price.min_seconds if price.per_second else 0,
                    max_seconds=price.max_seconds if price.per_second else 0,
                    default_seconds=price.default_seconds if price.per_second else 0,
                    capabilities=_capabilities(price.capabilities),
                )
                for price in self._handlers.price_list()
            ]
        )

    async def Quote(self, request: billing_pb2.QuoteRequest, context: Context) -> billing_pb2.QuoteResponse:
        tenant_id = parse_tenant_id(request.tenant_id) if request.tenant_id else None
        priced = await self._handlers.quote(tenant_id, lines_of(request.lines))
        return billing_pb2.QuoteResponse(
            lines=quote_line_messages(priced.quote.lines),
            total_credits=priced.quote.total,
            available_credits=priced.available_credits,
        )

    async def Reserve(
        self, request: billing_pb2.ReserveRequest, context: Context
    ) -> billing_pb2.ReserveResponse:
        asked = _reservation_request(request)
        reservation = await self._handlers.reserve(
            asked.tenant_id,
            asked.batch_id,
            asked.lines,
            asked.attribution,
            quote_id=asked.quote_id,
            fingerprint=asked.fingerprint,
        )
        return _reserved(reservation)

    async def ReserveMany(
        self, request: billing_pb2.ReserveManyRequest, context: Context
    ) -> billing_pb2.ReserveManyResponse:
        asked: list[ReservationRequest] = []
        malformed: dict[int, ServiceError] = {}
        for index, item in enumerate(request.reservations):
            try:
                asked.append(_reservation_request(item))
            except ServiceError as refused:
                malformed[index] = refused
        decided = iter(await self._handlers.reserve_many(asked))
        response = billing_pb2.ReserveManyResponse()
        for index in range(len(request.reservations)):
            outcome = malformed.get(index) or next(decided)
            answer = response.outcomes.add()
            if isinstance(outcome, ServiceError):
                answer.refused.CopyFrom(_refusal(outcome))
            else:
                answer.reserved.CopyFrom(_reserved(outcome))
        return response


def _reservation_request(request: billing_pb2.ReserveRequest) -> ReservationRequest:
    """A Reserve's request in the use case's terms (InvalidArgument for a malformed id)."""
    project = request.project
    if len(project) > MAX_PROJECT_CHARS:
        raise InvalidArgument(f"a project has at most {MAX_PROJECT_CHARS} characters", field="project")
    return ReservationRequest(
        parse_tenant_id(request.tenant_id),
        parse_batch_id(request.batch_id),
        tuple(lines_of(request.lines)),
        Attribution(
            api_key_id=str(parse_uuid(request.api_key_id, "api_key_id")) if request.api_key_id else "",
            project=project,
        ),
        quote_id=parse_uuid(request.quote_id, "quote_id") if request.quote_id else None,
        fingerprint=request.fingerprint,
    )


def _reserved(reservation: Reservation) -> billing_pb2.ReserveResponse:
    return from_fields(billing_pb2.ReserveResponse, reservation)


def _refusal(error: ServiceError) -> billing_pb2.Refusal:
    return billing_pb2.Refusal(
        code=status_code_for(error).name, reason=error.reason, message=error.message, details=error.details
    )


def lines_of(lines: Iterable[billing_pb2.QuoteLine]) -> list[QuoteLine]:
    """Quote lines of a request in the domain's terms."""
    return [
        from_fields(QuoteLine, line, options=tuple((option.name, option.value) for option in line.options))
        for line in lines
    ]


def quote_line_messages(lines: Iterable[QuoteLine]) -> list[billing_pb2.QuoteLine]:
    """Quote lines as messages (a quote's answer and a stored quote's), the inverse of `lines_of`."""
    return [
        from_fields(
            billing_pb2.QuoteLine,
            line,
            options=[billing_pb2.PriceOption(name=name, value=value) for name, value in line.options],
        )
        for line in lines
    ]


def _capabilities(capabilities: ModelCapabilities) -> billing_pb2.ModelCapabilities:
    return from_fields(
        billing_pb2.ModelCapabilities,
        capabilities,
        resolutions=[
            billing_pb2.PricedChoice(value=value, credits=credits)
            for value, credits in capabilities.resolutions.items()
        ],
        audio=capabilities.audio_credits is not None,
        audio_credits=capabilities.audio_credits or 0,
    )
