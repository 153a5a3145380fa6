"""Console endpoints of money: usage (chart, table, CSV) and the books (the filtered ledger with each
line's reason, its CSV, and monthly statements as page, CSV and print view).

Every read names the signed-in user's tenant. Figures on a page and in its CSV come from the same
view models, so each CSV's sums are the page's (and the ledger's).
"""

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import grpc
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from libs.vocabulary import RefType, values_of
from services.gateway.admin_ui import views
from services.gateway.api.ledger_exports import csv_download
from services.gateway.console import pages
from services.gateway.console.auth import ConsoleUser, CurrentUser
from services.gateway.console.dates import DayRange
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.console_ui.exports import exact_usd, ledger_csv, usage_csv
from services.gateway.console_ui.usage_chart import model_label, usage_chart
from services.gateway.http.params import MONTH_PATTERN, CursorText, FilterText, is_uuid
from services.gateway.schemas.pricing import StatementView
from services.gateway.use_cases.console_money import (
    ConsoleMoney,
    LedgerQuery,
    default_usage_period,
    month_label,
)
from services.gateway.use_cases.console_reads import NotTheTenants

# The ledger's types as a customer's available balance shows them: captures move hold to revenue.
LEDGER_TYPES = values_of(set(RefType) - {RefType.BATCH_CAPTURE})
MONTH = re.compile(MONTH_PATTERN)
# The longest usage period a page asks for (billing refuses more).
MAX_USAGE_DAYS = 366


def usage_period(first: str, last: str, today: date) -> tuple[date, date]:
    """[start, end) of the usage filters (the last day included); the last 30 days by default, and
    never more than a year."""
    start, end = default_usage_period(today)
    days = DayRange.parse(first, last)
    if days.first is not None:
        start = days.first
    if days.last is not None and days.last < date.max:
        end = days.last + timedelta(days=1)
    if end <= start:
        end = start + timedelta(days=1)
    return max(start, end - timedelta(days=MAX_USAGE_DAYS)), end


def ledger_query(
    batch_id: FilterText = "",
    ref_type: FilterText = "",
    created_from: FilterText = "",
    created_to: FilterText = "",
) -> LedgerQuery:
    """The books' filters from the query string, each ignored when it is not valid."""
    days = DayRange.parse(created_from, created_to)
    return LedgerQuery(
        batch_id=batch_id.lower() if is_uuid(batch_id) else "",
        ref_type=ref_type if ref_type in LEDGER_TYPES else "",
        created_from=days.start,
        created_to=days.end,
    )


LedgerFilters = Annotated[LedgerQuery, Depends(ledger_query)]


def _filters(query: LedgerQuery) -> dict[str, str]:
    """The filters as they read in the form and in links (the last day, not the bound after it)."""
    return {
        "batch_id": query.batch_id,
        "ref_type": query.ref_type,
        "created_from": query.created_from.date().isoformat() if query.created_from else "",
        "created_to": (query.created_to - timedelta(days=1)).date().isoformat() if query.created_to else "",
    }


def money_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """usage, usage_csv, books, books_csv, statement_pick, statement, statement_csv, statement_print."""
    money = ConsoleMoney(deps.backends, deps.settings.grpc_deadline_seconds)

    async def usage(
        request: Request, user: CurrentUser, created_from: FilterText = "", created_to: FilterText = ""
    ) -> Response:
        start, end = usage_period(created_from, created_to, datetime.now(UTC).date())
        report = await money.usage(user.tenant_id, start, end)
        filters = {"created_from": start.isoformat(), "created_to": (end - timedelta(days=1)).isoformat()}
        return pages.render(
            request,
            "usage.html",
            user=user,
            active="usage",
            report=report,
            chart=usage_chart(report),
            filters=filters,
            csv_href=views.query_link("/console/usage.csv", filters),
            model_label=model_label,
            exact_usd=exact_usd,
        )

    async def usage_export(
        request: Request, user: CurrentUser, created_from: FilterText = "", created_to: FilterText = ""
    ) -> Response:
        start, end = usage_period(created_from, created_to, datetime.now(UTC).date())
        report = await money.usage(user.tenant_id, start, end)
        return Response(
            usage_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="usage_{start}_{end - timedelta(days=1)}.csv"'
            },
        )

    async def books(
        request: Request, user: CurrentUser, query: LedgerFilters, cursor: CursorText = ""
    ) -> Response:
        page = await money.ledger(user.tenant_id, query, cursor)
        filters = _filters(query)
        return pages.render(
            request,
            "books/ledger.html",
            user=user,
            active="books",
            lines=page.lines,
            filters=filters,
            type_options=views.options(LEDGER_TYPES, query.ref_type, "any"),
            fault_labels=views.FAULT_LABELS,
            csv_href=views.query_link("/console/books.csv", filters),
            this_month=month_label(datetime.now(UTC)),
            pages=views.pager(
                "/console/books", filters, on_later_page=bool(cursor), next_cursor=page.next_cursor
            ),
        )

    async def books_export(user: CurrentUser, query: LedgerFilters) -> StreamingResponse:
        return csv_download(ledger_csv(money.ledger_lines(user.tenant_id, query)), "ledger.csv")

    async def _statement(user: ConsoleUser, month: str) -> StatementView:
        if not MONTH.match(month):
            raise NotTheTenants(month)
        try:
            return await money.statement(user.tenant_id, month)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise NotTheTenants(month) from None
            raise

    async def statement_pick(month: FilterText = "") -> Response:
        chosen = month if MONTH.match(month) else month_label(datetime.now(UTC))
        return RedirectResponse(f"/console/books/statements/{chosen}", status_code=303)

    async def statement(request: Request, user: CurrentUser, month: str) -> Response:
        view = await _statement(user, month)
        return pages.render(
            request, "books/statement.html", user=user, active="books", statement=view, months=_around(month)
        )

    async def statement_export(user: CurrentUser, month: str) -> Response:
        view = await _statement(user, month)
        return Response(
            view.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="statement_{month}.csv"'},
        )

    async def statement_print(request: Request, user: CurrentUser, month: str) -> Response:
        view = await _statement(user, month)
        return pages.render(request, "books/statement_print.html", user=user, statement=view)

    return {
        "usage": usage,
        "usage_csv": usage_export,
        "books": books,
        "books_csv": books_export,
        "statement_pick": statement_pick,
        "statement": statement,
        "statement_csv": statement_export,
        "statement_print": statement_print,
    }


def _around(month: str) -> dict[str, str]:
    """The months before and after `month` (`YYYY-MM`), for the statement's links."""
    year, number = int(month[:4]), int(month[5:])
    before = f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"
    after = f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"
    return {"previous": before, "next": after}
