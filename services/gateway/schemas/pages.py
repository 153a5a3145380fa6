"""The shape every cursor-paged list answers: a page of items and the cursor of the next page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Self, TypeVar

from pydantic import BaseModel, Field

ItemT = TypeVar("ItemT", bound=BaseModel)


class CursorPage(BaseModel, Generic[ItemT]):
    """One page of a list; each topic names its own (`class TaskPage(CursorPage[TaskView])`).

    A named subclass keeps its own name and docstring in /openapi.json.
    """

    items: list[ItemT]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")

    @classmethod
    def of(cls, items: Iterable[ItemT], next_cursor: str) -> Self:
        """The page of `items`; a backend's empty `next_cursor` (the last page) answered as null."""
        return cls(items=list(items), next_cursor=next_cursor or None)
