"""Monthly margins read months, not captures (issue 30, ADR-170).

`tenant_month_outcomes.reported_frozen_cost_usd_micros`: of the provider cost frozen with the
month's captures (`provider_cost_usd_micros`, ADR-152), the part frozen for captures whose task
reported a provider spend (a `task_provider_costs` row, ADR-144). A month's margins count the frozen
cost only for the captures that reported none: the difference of the two columns.

A capture and its task's report may be written in either order (an outcome chunk inserts its
transfers, then its reports; a late event reports a capture that settlement pulled without spend),
so two statement-level triggers keep it, each adding what its new rows pair with rows already
there: the transfers' trigger (`summarize_outcomes`, replaced) for new captures whose task already
reported, the reports' trigger for new reports whose capture already exists. Whichever row comes
second adds the cost, once: a report's `INSERT .. ON CONFLICT DO NOTHING` passes only the rows it
inserted to the trigger, and a task has one capture (its key, `task_outcome:{task}`). Existing rows
are summarized here once.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

S = "billing"
_MONTH = "(date_trunc('month', {} AT TIME ZONE 'UTC'))::date"

# A capture's frozen provider cost: its batch's line of that model at that price (as 0016).
_FROZEN = f"""(SELECT max(l.provider_cost_usd_micros) FROM {S}.batch_hold_lines l
              WHERE n.ref_type = 'batch_capture' AND l.batch_id = n.batch_id
                AND l.model = n.model AND l.unit_price = n.amount)"""
_REPORTED = f"EXISTS (SELECT 1 FROM {S}.task_provider_costs p WHERE p.task_id = n.ref_id)"


def upgrade() -> None:
    op.add_column(
        "tenant_month_outcomes",
        sa.Column(
            "reported_frozen_cost_usd_micros", sa.BigInteger, nullable=False, server_default=sa.text("0")
        ),
        schema=S,
    )
    month = _MONTH.format("n.created_at")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {S}.summarize_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.tenant_month_outcomes AS t
                (month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros,
                 reported_frozen_cost_usd_micros)
            SELECT {month}, n.tenant_id, coalesce(n.model, ''), n.ref_type, count(*), sum(n.amount),
                coalesce(sum({_FROZEN}), 0),
                coalesce(sum({_FROZEN}) FILTER (WHERE {_REPORTED}), 0)
            FROM new_transfers n
            WHERE n.ref_type IN ('batch_capture', 'batch_refund')
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (month, tenant_id, model, ref_type) DO UPDATE
            SET transfers = t.transfers + excluded.transfers, amount = t.amount + excluded.amount,
                provider_cost_usd_micros = t.provider_cost_usd_micros + excluded.provider_cost_usd_micros,
                reported_frozen_cost_usd_micros
                    = t.reported_frozen_cost_usd_micros + excluded.reported_frozen_cost_usd_micros;
            RETURN NULL;
        END $$"""
    )
    # New reports of captures already posted: the capture found by its unique key (no index on
    # ref_id), its summary row (which exists: the capture's own trigger made it) gets the cost.
    op.execute(
        f"""
        CREATE FUNCTION {S}.summarize_reported_captures() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.tenant_month_outcomes AS t
                (month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros,
                 reported_frozen_cost_usd_micros)
            SELECT {month}, n.tenant_id, coalesce(n.model, ''), n.ref_type, 0, 0, 0,
                coalesce(sum({_FROZEN}), 0)
            FROM new_reports r
            JOIN {S}.transfers n ON n.key = 'task_outcome:' || r.task_id AND n.ref_id = r.task_id
            WHERE n.ref_type = 'batch_capture'
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (month, tenant_id, model, ref_type) DO UPDATE
            SET reported_frozen_cost_usd_micros
                = t.reported_frozen_cost_usd_micros + excluded.reported_frozen_cost_usd_micros;
            RETURN NULL;
        END $$"""
    )
    op.execute(
        f"""
        CREATE TRIGGER task_provider_costs_summarized AFTER INSERT ON {S}.task_provider_costs
        REFERENCING NEW TABLE AS new_reports
        FOR EACH STATEMENT EXECUTE FUNCTION {S}.summarize_reported_captures()"""
    )
    # What existed before the triggers.
    op.execute(
        f"""
        UPDATE {S}.tenant_month_outcomes t SET reported_frozen_cost_usd_micros = r.cost
        FROM (
            SELECT {month} AS month, n.tenant_id, coalesce(n.model, '') AS model, sum({_FROZEN}) AS cost
            FROM {S}.task_provider_costs p
            JOIN {S}.transfers n ON n.key = 'task_outcome:' || p.task_id AND n.ref_id = p.task_id
            WHERE n.ref_type = 'batch_capture'
            GROUP BY 1, 2, 3
        ) r
        WHERE t.month = r.month AND t.tenant_id = r.tenant_id AND t.model = r.model
          AND t.ref_type = 'batch_capture' AND r.cost IS NOT NULL"""
    )


def downgrade() -> None:
    op.execute(f"DROP TRIGGER task_provider_costs_summarized ON {S}.task_provider_costs")
    op.execute(f"DROP FUNCTION {S}.summarize_reported_captures()")
    month = _MONTH.format("n.created_at")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {S}.summarize_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {S}.tenant_month_outcomes AS t
                (month, tenant_id, model, ref_type, transfers, amount, provider_cost_usd_micros)
            SELECT {month}, n.tenant_id, coalesce(n.model, ''), n.ref_type, count(*), sum(n.amount),
                coalesce(sum({_FROZEN}), 0)
            FROM new_transfers n
            WHERE n.ref_type IN ('batch_capture', 'batch_refund')
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (month, tenant_id, model, ref_type) DO UPDATE
            SET transfers = t.transfers + excluded.transfers, amount = t.amount + excluded.amount,
                provider_cost_usd_micros = t.provider_cost_usd_micros + excluded.provider_cost_usd_micros;
            RETURN NULL;
        END $$"""
    )
    op.drop_column("tenant_month_outcomes", "reported_frozen_cost_usd_micros", schema=S)
