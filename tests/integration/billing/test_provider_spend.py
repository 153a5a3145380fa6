"""Provider spend in the books (issue 26 item 2, ADR-144): billing stores what each task outcome
reports the providers bill us, and margins use that real spend (failed-but-billed and doubled
jobs included) instead of one frozen estimate per delivered video."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from libs.db import Database
from libs.price_list import DEFAULT_PRICING
from services.billing.domain.ids import BatchId, TaskId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.domain.statements import month_of
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import assert_ledger_invariants, new_batch_id
from .test_billing_payments import sales_handlers

# The frozen estimate of one sora-2 video (price list), and one real provider job.
FROZEN = DEFAULT_PRICING["sora-2"].provider_cost_usd_micros
JOB = 30_000


def _outcome(
    batch_id: BatchId, name: str, model: str, kind: OutcomeKind, cost: int | None, jobs: int = 1
) -> TaskOutcome:
    return TaskOutcome(
        batch_id, TaskId(f"{batch_id}-{name}"), model, kind, provider_cost_usd_micros=cost, provider_jobs=jobs
    )


async def _batch(handlers: BillingHandlers, model: str, items: int) -> BatchId:
    tenant_id = await handlers.create_tenant("spend")
    await handlers.top_up(tenant_id, 1_000, f"grant-{uuid.uuid4()}")
    batch_id = new_batch_id()
    await handlers.reserve(tenant_id, batch_id, [QuoteLine(model, items)])
    return batch_id


async def test_margins_count_every_billed_provider_job_and_estimate_only_what_reported_none(
    database: Database,
) -> None:
    # A model of this test only, priced like sora-2, so other tests' outcomes stay out of its line.
    model = f"sora-2-{uuid.uuid4().hex[:6]}"
    handlers = sales_handlers(database, {model: DEFAULT_PRICING["sora-2"]})
    batch_id = await _batch(handlers, model, 5)
    await handlers.apply_task_outcomes(
        [
            _outcome(batch_id, "one-job", model, OutcomeKind.CAPTURE, JOB),
            # Two jobs billed for one video (a doubled or a failed-but-billed attempt).
            _outcome(batch_id, "two-jobs", model, OutcomeKind.CAPTURE, 2 * JOB, jobs=2),
            # Refunded to the customer, billed to us: spend without revenue.
            _outcome(batch_id, "failed-billed", model, OutcomeKind.REFUND, JOB),
            # Reported as costing nothing (its provider refused the create call).
            _outcome(batch_id, "refused", model, OutcomeKind.REFUND, 0, jobs=0),
            # Published before ADR-144: no spend reported, the frozen estimate stands in.
            _outcome(batch_id, "unreported", model, OutcomeKind.CAPTURE, None),
        ]
    )

    report = await handlers.monthly_margins(month_of(datetime.now(UTC)))
    (line,) = [line for line in report.models if line.model == model]
    assert (line.videos, line.revenue_credits) == (3, 30)
    assert line.provider_cost_usd_micros == 4 * JOB + FROZEN

    margin = await handlers.batch_margin(batch_id)
    assert (margin.revenue_credits, margin.revenue_usd_micros) == (30, 300_000)
    assert margin.provider_cost_usd_micros == 4 * JOB + FROZEN
    assert (margin.provider_jobs, margin.provider_cost_estimated) == (5, True)
    assert margin.margin_usd_micros == 300_000 - 4 * JOB - FROZEN
    await assert_ledger_invariants(database)


async def test_a_redelivered_outcome_keeps_the_first_spend_and_a_late_event_replaces_no_estimate_twice(
    database: Database,
) -> None:
    model = f"sora-2-{uuid.uuid4().hex[:6]}"
    handlers = sales_handlers(database, {model: DEFAULT_PRICING["sora-2"]})
    batch_id = await _batch(handlers, model, 2)
    # Settlement pulled this outcome from the batch service's task list first: no spend in it.
    await handlers.apply_task_outcomes([_outcome(batch_id, "pulled", model, OutcomeKind.CAPTURE, None)])
    assert (await handlers.batch_margin(batch_id)).provider_cost_usd_micros == FROZEN

    # Its event arrives late (the capture is not applied twice, the spend is recorded); the other
    # task's event is delivered twice, the second time with another figure.
    await handlers.apply_task_outcomes(
        [
            _outcome(batch_id, "pulled", model, OutcomeKind.CAPTURE, JOB),
            _outcome(batch_id, "twice", model, OutcomeKind.CAPTURE, JOB),
        ]
    )
    await handlers.apply_task_outcomes([_outcome(batch_id, "twice", model, OutcomeKind.CAPTURE, 5 * JOB)])

    margin = await handlers.batch_margin(batch_id)
    assert (margin.revenue_credits, margin.provider_cost_usd_micros) == (20, 2 * JOB)
    assert (margin.provider_jobs, margin.provider_cost_estimated) == (2, False)
    await assert_ledger_invariants(database)
