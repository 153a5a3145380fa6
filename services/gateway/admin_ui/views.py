"""What the dashboard shows, prepared for its templates: the filter vocabularies, formatted figures
(credits, dollars, dates), links with their query strings, progress bars and failures by fault.

Templates only place these values; every formatting rule lives here, so a change of how credits or
dates read is made once. The `FILTERS` are registered in the template environment (`pages.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from libs import vocabulary
from libs.vocabulary import Fault, values_of
from services.gateway.schemas.admin_batches import FailureGroupView
from services.gateway.schemas.batches import BatchView

LIVE_REFRESH_SECONDS = 2
TABS = (
    ("overview", "Overview"),
    ("tasks", "Tasks"),
    ("provider_jobs", "Provider jobs"),
    ("billing", "Billing"),
    ("webhooks", "Webhooks"),
)
# The filters' choices: the shared vocabulary's values (libs/vocabulary.py).
BATCH_STATUSES = values_of(vocabulary.BatchStatus)
SETTLEMENT_STATUSES = values_of(vocabulary.SettlementStatus)
TASK_STATUSES = values_of(vocabulary.TaskStatus)
FAILURE_TYPES = values_of(vocabulary.FailureType)
TASK_PAGE_SIZES = {"10": 10, "50": 50, "200": 200}
FAULT_LABELS = {
    Fault.PROVIDER: "Provider",
    Fault.CUSTOMER_INPUT: "Customer input",
    Fault.US: "Us (internal)",
    Fault.CANCELLED: "Cancelled by the customer",
}
PROMPT_PREVIEW_CHARS = 80
# A payment reference on a ledger line (e.g. "pilot:cs_test_a1..."): its end tells payments apart.
REFERENCE_PREVIEW_CHARS = 16
# The settlement shown for a rejected batch: nothing was frozen, so nothing is pending.
NOT_CHARGED = "not_charged"
NAVIGATION = (
    ("batches", "/admin/batches", "Batches"),
    ("tenants", "/admin/tenants", "Tenants"),
    ("reconciliation", "/admin/reconciliation", "Reconciliation"),
)


# ------------------------------------------------------------------ formatting (template filters)


def when(moment: datetime | None) -> str:
    """A UTC moment to the second, or a dash when it has not happened."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def credits(value: int) -> str:
    """Credits with thousands separators."""
    return f"{value:,}"


def signed_credits(value: int) -> str:
    """A change of balance, always with its sign."""
    return f"{value:+,}"


def balance_change(value: int) -> str:
    """A transfer's change of the available balance: signed, or a plain 0 (captures move none)."""
    return f"{value:+,}" if value else "0"


def usd(micros: int) -> str:
    """US dollar micros as dollars to four decimals."""
    return f"${micros / 1_000_000:,.4f}"


def dollars(micros: int) -> str:
    """US dollar micros as dollars and cents (what a customer paid or spent)."""
    return f"${micros / 1_000_000:,.2f}"


def percent(value: float) -> str:
    """A percentage to one decimal."""
    return f"{value:.1f}%"


def duration(seconds: float | None) -> str:
    """A batch's duration, or "running" until it has one."""
    return f"{seconds:,.1f} s" if seconds is not None else "running"


def short_id(identifier: str) -> str:
    """The first eight characters of an id: enough to tell batches apart on a page."""
    return identifier[:8]


def prompt_preview(prompt: str) -> str:
    """A prompt cut to fit a table cell (the whole prompt goes in the cell's title)."""
    return prompt if len(prompt) <= PROMPT_PREVIEW_CHARS else prompt[:PROMPT_PREVIEW_CHARS] + "…"


# ---------------------------------------------------------------------------------- view models


@dataclass(frozen=True, slots=True)
class Link:
    """A link to another page (a pager button, a tab, a navigation entry)."""

    href: str
    label: str
    active: bool = False
    key: str = ""


@dataclass(frozen=True, slots=True)
class InviteNotice:
    """The outcome of the tenant page's console invite form: the link to copy, or why not."""

    url: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a filter's select box."""

    value: str
    label: str
    selected: bool = False


@dataclass(frozen=True, slots=True)
class BarSegment:
    """One coloured part of a progress bar; `width` is a percentage with two decimals."""

    kind: str
    width: str


@dataclass(frozen=True, slots=True)
class Progress:
    """A batch's stacked progress bar: succeeded, failed, cancelled; the rest is pending.

    A rejected batch never ran: nothing of it is done, and its bar says so instead of a count.
    """

    total: int
    done: int
    segments: tuple[BarSegment, ...]
    rejected: bool = False

    @property
    def summary(self) -> str:
        """What the bar stands for, in words: "3 / 10" or "never ran (rejected)"."""
        return "never ran (rejected)" if self.rejected else f"{self.done:,} / {self.total:,}"


@dataclass(frozen=True, slots=True)
class Reference:
    """A ledger line's reference, shortened: linked to its batch when it has one; `title` in full."""

    label: str
    title: str
    href: str | None = None


@dataclass(frozen=True, slots=True)
class FaultGroup:
    """The failure types that were one party's fault, with their task count."""

    fault: str
    label: str
    count: int
    groups: tuple[FailureGroupView, ...]


def query_link(path: str, params: Mapping[str, str | None]) -> str:
    """`path` with the non-empty `params` as its query string."""
    kept = {key: value for key, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def options(values: Iterable[str], selected: str, all_label: str) -> list[Option]:
    """A select box's choices: "all" first (empty value), then each value."""
    return [Option("", all_label), *(Option(value, value, value == selected) for value in values)]


def progress(batch: BatchView) -> Progress:
    """The progress bar of a batch."""
    if batch.status == "rejected":
        return Progress(total=batch.total_count, done=0, segments=(), rejected=True)
    total = max(batch.total_count, 1)
    counts = (
        ("ok", batch.success_count),
        ("failed", batch.failed_count),
        ("cancelled", batch.cancelled_count),
    )
    return Progress(
        total=batch.total_count,
        done=batch.total_count - batch.pending_count,
        segments=tuple(BarSegment(kind, f"{count * 100 / total:.2f}") for kind, count in counts if count),
    )


def settlement(batch: BatchView) -> str:
    """The settlement a page shows: a rejected batch froze nothing, so it has none ("not_charged")."""
    return NOT_CHARGED if batch.status == "rejected" else batch.settlement_status


def ledger_reference(ref_id: str, batch_id: str | None, batch_path: str = "/admin/batches") -> Reference:
    """A ledger line's reference made readable: the batch's short id linked to its page (and the
    task's short id for a task's refund); a payment reference cut to its last characters."""
    if batch_id:
        href = f"{batch_path}/{batch_id}"
        if ref_id == batch_id:
            return Reference(f"batch {short_id(batch_id)}", ref_id, href)
        return Reference(f"task {short_id(ref_id)} · batch {short_id(batch_id)}", ref_id, href)
    if len(ref_id) <= REFERENCE_PREVIEW_CHARS:
        return Reference(ref_id, ref_id)
    return Reference("…" + ref_id[-REFERENCE_PREVIEW_CHARS:], ref_id)


def is_live(batch: BatchView) -> bool:
    """True while tasks run or billing has not settled yet."""
    return batch.status not in ("rejected",) and (
        batch.pending_count > 0 or batch.settlement_status == "pending"
    )


def navigation(active: str) -> list[Link]:
    """The top bar's links, the current section marked."""
    return [Link(href, label, key == active, key) for key, href, label in NAVIGATION]


def batch_tabs(batch_id: str, active: str) -> list[Link]:
    """The tab bar of a batch page."""
    return [Link(f"/admin/batches/{batch_id}?tab={key}", label, key == active, key) for key, label in TABS]


def failures_by_fault(failures: Sequence[FailureGroupView]) -> list[FaultGroup]:
    """Failed and cancelled tasks grouped by whose fault they were, in the order of FAULT_LABELS."""
    by_fault: dict[str, list[FailureGroupView]] = {}
    for group in failures:
        by_fault.setdefault(group.fault, []).append(group)
    return [
        FaultGroup(fault, label, sum(group.count for group in groups), tuple(groups))
        for fault, label in FAULT_LABELS.items()
        if (groups := by_fault.get(fault))
    ]


def pager(
    base: str,
    filters: Mapping[str, str | None],
    *,
    on_later_page: bool,
    next_cursor: str | None,
    next_label: str = "Next page →",
) -> list[Link]:
    """Back to the first page (when past it) and on to the next one (when there is one); the links'
    keys are "first" and "next"."""
    links = []
    if on_later_page:
        links.append(Link(query_link(base, {**filters, "cursor": None}), "← First page", key="first"))
    if next_cursor:
        links.append(Link(query_link(base, {**filters, "cursor": next_cursor}), next_label, key="next"))
    return links


# The filters templates use: `{{ batch.frozen_credits | credits }}`, `{{ batch | progress }}`.
FILTERS: Mapping[str, Callable[..., object]] = {
    "when": when,
    "credits": credits,
    "signed_credits": signed_credits,
    "balance_change": balance_change,
    "usd": usd,
    "dollars": dollars,
    "percent": percent,
    "duration": duration,
    "short_id": short_id,
    "prompt_preview": prompt_preview,
    "progress": progress,
    "settlement": settlement,
    "is_live": is_live,
    "ledger_reference": ledger_reference,
}
