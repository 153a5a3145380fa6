"""ADR-169's A/B: 50,001 ledger entries exported through billing's ExportLedger (a gRPC message per
entry) and ExportLedgerPages (up to 1,000 a message), each rendered as the gateway's CSV; wall time
and CPU of this process (a real gRPC server and its client in one process), three runs each.

`python -m bench.export_messages rows pages rows pages`
"""

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import psycopg
from reelbatch.proto.billing.v1 import billing_pb2

from libs.db import Database, libpq_url
from libs.price_list import DEFAULT_PRICING
from services.billing.adapters.repository import BillingRepository
from services.billing.bootstrap import price_list
from services.billing.entrypoints.rpc.servicer import BillingServicer
from services.billing.use_cases.handlers import BillingHandlers
from services.gateway.api.ledger_exports import ledger_csv
from tests.integration.billing.billing_testkit import serving
from tests.isolation import create_migrated_database, drop_database

ENTRIES = 50_001
# 25,000 more top-ups of one credit: copies of the first one's transfer and its two entries.
COPIES = """
    WITH t AS (SELECT * FROM billing.transfers LIMIT 1),
    n AS (
        INSERT INTO billing.transfers
            (key, ref_type, ref_id, tenant_id, debit_account_id, credit_account_id, amount)
        SELECT 'topup:x:' || g, t.ref_type, 'x' || g, t.tenant_id, t.debit_account_id,
               t.credit_account_id, 1
        FROM t, generate_series(1, 25000) g
        RETURNING id, tenant_id, debit_account_id, credit_account_id)
    INSERT INTO billing.ledger_entries
        (transfer_id, account_id, tenant_id, ref_type, ref_id, amount, balance_after)
    SELECT n.id, v.account, n.tenant_id, 'topup', 'x', v.amount, v.balance FROM n,
        LATERAL (VALUES (n.debit_account_id, -1, NULL::bigint), (n.credit_account_id, 1, 1::bigint))
            v(account, amount, balance)"""


async def main() -> None:
    name, url = create_migrated_database()
    try:
        db = Database(url, pool_size=4)
        handlers = BillingHandlers(
            BillingRepository(db), price_list(dict(DEFAULT_PRICING)), outcome_source=None, chunk_size=200
        )
        async with serving(BillingServicer(handlers)) as stub:
            tenant = (await stub.CreateTenant(billing_pb2.CreateTenantRequest(name="t"))).tenant_id
            await stub.TopUp(billing_pb2.TopUpRequest(tenant_id=tenant, credits=1, reference="first"))
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                conn.execute(COPIES)
                conn.execute("VACUUM ANALYZE")
            request = billing_pb2.ExportLedgerRequest()

            async def rows(rpc: str) -> AsyncIterator[billing_pb2.LedgerExportRow]:
                if rpc == "rows":
                    async for row in stub.ExportLedger(request):
                        yield row
                else:
                    async for page in stub.ExportLedgerPages(request):
                        for row in page.rows:
                            yield row

            for rpc in sys.argv[1:] or ["rows", "pages"]:
                for _ in range(3):
                    cpu, wall, size = time.process_time(), time.perf_counter(), 0
                    async for chunk in ledger_csv(rows(rpc)):
                        size += len(chunk)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    print(
                        f"{rpc}: {ENTRIES / wall:,.0f} rows/s, {cpu / ENTRIES * 1e6:.1f} us of CPU a row,"
                        f" {size / 1e6:.1f} MB of CSV"
                    )
        await db.close()
    finally:
        drop_database(name)


if __name__ == "__main__":
    asyncio.run(main())
