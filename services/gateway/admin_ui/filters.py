"""Query-string filters that the operator dashboard and the customer console read the same way.

Each page filter is optional, and a value a page cannot use is ignored ("" afterwards) rather than
refused: a stale bookmark still opens the page. Only the bounds of `FilterText`/`CursorText` answer
422 (a value longer than any real filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from services.gateway.admin_ui import views
from services.gateway.http.params import CursorText, FilterText


@dataclass(frozen=True, slots=True)
class BatchTabQuery:
    """A batch page's tab (checked by each page against its own tabs), task filters and cursor."""

    tab: str
    status: str
    failure_type: str
    cursor: str


async def batch_tab_query(
    tab: FilterText = "overview",
    status: FilterText = "",
    failure_type: FilterText = "",
    cursor: CursorText = "",
) -> BatchTabQuery:
    """The batch page's query values, an unknown task status or failure type dropped."""
    # async although it awaits nothing: FastAPI runs a sync dependency in a worker thread.
    return BatchTabQuery(
        tab=tab,
        status=status if status in views.TASK_STATUSES else "",
        failure_type=failure_type if failure_type in views.FAILURE_TYPES else "",
        cursor=cursor,
    )


BatchTabFilters = Annotated[BatchTabQuery, Depends(batch_tab_query)]
