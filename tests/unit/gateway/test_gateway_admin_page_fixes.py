"""Operator pages as a reviewer read them: a rejected batch is neither pending settlement nor done,
and the tenant ledger's references are short links instead of bare UUIDs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.admin_ui import views
from tests.unit.gateway.gateway_fakes import ADMIN, BATCH_ID, TENANT_ID
from tests.unit.gateway.test_gateway_admin_fakes import FinanceBilling, ReportingBatch

TASK_ID = "5c3a8f52-95c1-4a0a-9a84-1b1df5f0aa01"


@pytest.fixture
def billing() -> FinanceBilling:
    return FinanceBilling()


@pytest.fixture
def batch() -> ReportingBatch:
    rejected = ReportingBatch()
    # As the batch service answers a batch refused with 402: nothing ran, nothing is pending.
    rejected.batch.status = "rejected"
    rejected.batch.success_count = rejected.batch.failed_count = 0
    rejected.batch.pending_count = 0
    rejected.batch.frozen_credits = rejected.batch.credits_spent = rejected.batch.refunded_credits = 0
    rejected.batch.settlement_status = "pending"
    return rejected


def test_a_rejected_batch_shows_no_settlement_and_an_empty_bar_that_says_it_never_ran(
    client: TestClient,
) -> None:
    overview = client.get(f"/admin/batches/{BATCH_ID}", headers=ADMIN).text
    listing = client.get("/admin/batches", headers=ADMIN).text

    for html in (overview, listing):
        assert 'class="badge badge-not_charged">not charged<' in html
        assert "badge-pending" not in html
        assert "never ran (rejected)" in html
        assert 'aria-valuenow="0"' in html
        assert "bar-ok" not in html
    assert "20 / 20" not in overview + listing


def test_the_tenant_ledger_links_batches_shortens_ids_and_keeps_timestamps_on_one_line(
    client: TestClient, billing: FinanceBilling
) -> None:
    billing.ledger = [
        billing_pb2.LedgerEntry(
            entry_id="2",
            ref_type="batch_refund",
            ref_id=TASK_ID,
            batch_id=BATCH_ID,
            credits_delta=10,
            balance_after=4810,
        ),
        billing_pb2.LedgerEntry(
            entry_id="1",
            ref_type="batch_upfront",
            ref_id=BATCH_ID,
            batch_id=BATCH_ID,
            credits_delta=-200,
            balance_after=4800,
        ),
        billing_pb2.LedgerEntry(
            entry_id="0",
            ref_type="purchase",
            ref_id="pilot:cs_test_0123456789abcdef0123456789",
            credits_delta=5000,
        ),
    ]

    html = client.get(f"/admin/tenants/{TENANT_ID}", headers=ADMIN).text
    ledger = html[html.index('id="tenant-ledger"') :]

    assert f'<a href="/admin/batches/{BATCH_ID}">task {TASK_ID[:8]} · batch {BATCH_ID[:8]}</a>' in ledger
    assert f'<a href="/admin/batches/{BATCH_ID}">batch {BATCH_ID[:8]}</a>' in ledger
    assert ">…abcdef0123456789<" in ledger
    assert f'title="{TASK_ID}"' in ledger
    assert ">" + TASK_ID + "<" not in ledger
    assert ledger.count('class="when"') == 3


def test_a_long_payment_reference_keeps_its_end_and_its_full_text_in_the_title() -> None:
    reference = views.ledger_reference("pilot:cs_test_0123456789abcdef0123456789", None)

    assert reference.label == "…abcdef0123456789"
    assert (reference.title, reference.href) == ("pilot:cs_test_0123456789abcdef0123456789", None)
