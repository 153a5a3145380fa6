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
