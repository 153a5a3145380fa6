"""Billing's domain metrics: credits frozen, captured, refunded and released.

Recorded after the transaction that moved the credits committed, and only for transfers that
were new (a replayed key moves nothing, so it counts nothing). Exported by the process's
Prometheus endpoint as `reelbatch_credits_<movement>_total`.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics

from services.billing.domain.ledger import RefType, Transfer

_meter = metrics.get_meter("reelbatch.billing")

_COUNTERS = {
    RefType.BATCH_UPFRONT: _meter.create_counter(
        "reelbatch_credits_frozen", description="Credits frozen for accepted batches"
    ),
    RefType.BATCH_CAPTURE: _meter.create_counter(
        "reelbatch_credits_captured", description="Credits captured for succeeded tasks"
    ),
    RefType.BATCH_REFUND: _meter.create_counter(
        "reelbatch_credits_refunded", description="Credits refunded for failed or cancelled tasks"
    ),
    RefType.BATCH_SETTLE: _meter.create_counter(
        "reelbatch_credits_released", description="Credits left in a hold and released at settlement"
    ),
}


def record_transfers(transfers: Iterable[Transfer]) -> None:
    """Counts the credits of freshly committed batch transfers, per movement."""
    for transfer in transfers:
        counter = _COUNTERS.get(transfer.ref_type)
        if counter is not None:
            counter.add(transfer.amount)


_ALERTS = _meter.create_counter(
    "reelbatch_spend_alerts", description="Spend alert thresholds crossed (label `type`: the event type)"
)


def record_alerts(alert_types: Iterable[str]) -> None:
    """Counts committed threshold crossings per event type (`credits.low`, `budget.threshold`)."""
    for alert_type in alert_types:
        _ALERTS.add(1, {"type": alert_type})


_AUTO_TOP_UPS = _meter.create_counter(
    "reelbatch_auto_top_ups",
    description=(
        "Automatic top-up purchases by outcome (label `outcome`: requested, submitted, succeeded,"
        " declined); a declined one turned the tenant's auto top-up off (ADR-135)"
    ),
)
_REVERSED = _meter.create_counter(
    "reelbatch_credits_reversed",
    description="Credits taken back by refunded or disputed payments (label `to`: available or debt)",
)


def record_auto_top_ups(outcome: str, count: int = 1) -> None:
    """Counts automatic top-up purchases reaching `outcome`."""
    if count:
        _AUTO_TOP_UPS.add(count, {"outcome": outcome})


def record_reversal(from_available: int, to_debt: int) -> None:
    """Counts the credits one payment reversal took from the available credits and added to debt."""
    if from_available:
        _REVERSED.add(from_available, {"to": "available"})
    if to_debt:
        _REVERSED.add(to_debt, {"to": "debt"})
