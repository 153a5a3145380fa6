"""The console's date filters: `YYYY-MM-DD` days from a form, as the UTC instants they bound."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class DayRange:
    """From the start of `first` to the end of `last` (both included); either may be open."""

    first: date | None
    last: date | None

    @classmethod
    def parse(cls, first: str, last: str) -> DayRange:
        """Days as typed; one that is not a date is ignored (the filter shows empty again)."""
        return cls(_day(first), _day(last))

    @property
    def start(self) -> datetime | None:
        """The first instant included."""
        return datetime.combine(self.first, time(), UTC) if self.first else None

    @property
    def end(self) -> datetime | None:
        """The first instant after the range (None for the last day there is: no bound)."""
        if self.last is None or self.last == date.max:
            return None
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)

    def form_values(self, first_name: str, last_name: str) -> dict[str, str]:
        """The filter's fields as the form shows them again."""
        return {
            first_name: self.first.isoformat() if self.first else "",
            last_name: self.last.isoformat() if self.last else "",
        }


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None
