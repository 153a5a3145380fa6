"""The dashboard's HTML, rendered from the admin API's views (every value escaped by `render`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode

from services.gateway.admin_ui.markup import Markup, join, render
from services.gateway.schemas.admin_batches import AdminBatchDetail, AdminBatchView, FailureGroupView
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.schemas.credits import BatchBillingView, CreditsView, LedgerPage
from services.gateway.schemas.reconciliation import ReconciliationView
from services.gateway.schemas.tasks import TaskPage
from services.gateway.schemas.tenants import TenantPage

STATIC_PREFIX = "/admin/static"
LIVE_REFRESH_SECONDS = 2
TABS = (("overview", "Overview"), ("tasks", "Tasks"), ("billing", "Billing"), ("webhooks", "Webhooks"))
BATCH_STATUSES = (
    "reserving",
    "queued",
    "processing",
    "completed",
    "partial",
    "failed",
    "cancelled",
    "rejected",
)
SETTLEMENT_STATUSES = ("pending", "settled", "refunded")
TASK_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FAILURE_TYPES = (
    "timeout",
    "provider_error",
    "rate_limited",
    "content_policy",
    "invalid_input",
    "internal",
    "cancelled",
)
FAULT_LABELS = {
    "provider": "Provider",
    "customer_input": "Customer input",
    "us": "Us (internal)",
    "cancelled": "Cancelled by the customer",
}
PROMPT_PREVIEW_CHARS = 80


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def _credits(value: int) -> str:
    return f"{value:,}"


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:,.4f}"


def _query(path: str, params: Mapping[str, str | None]) -> str:
    kept = {key: value for key, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def badge(status: str) -> Markup:
    """A coloured status label."""
    return render('<span class="badge badge-{status}">{status}</span>', status=status)


def progress(batch: AdminBatchView) -> Markup:
    """A stacked bar: succeeded, failed, cancelled, pending."""
    total = max(batch.total_count, 1)
    segments = (
        ("ok", batch.success_count),
        ("failed", batch.failed_count),
        ("cancelled", batch.cancelled_count),
    )
    bars = join(
        render(
            '<span class="bar bar-{kind}" style="width: {width:.2f}%"></span>',
            kind=kind,
            width=count * 100 / total,
        )
        for kind, count in segments
        if count
    )
    done = batch.total_count - batch.pending_count
    return render(
        '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" '
        'aria-valuenow="{done}" title="{done} of {total} finished">{bars}</div>',
        total=batch.total_count,
        done=done,
        bars=bars,
    )


def is_live(batch: AdminBatchView) -> bool:
    """True while tasks run or billing has not settled yet."""
    return batch.status not in ("rejected",) and (
        batch.pending_count > 0 or batch.settlement_status == "pending"
    )


def layout(
    title: str, body: Markup, *, csrf_token: str | None, live: bool = False, active: str = ""
) -> Markup:
    """The page frame: header, navigation, sign-out form and content."""
    nav = join(
        render(
            '<a href="{href}" class="{cls}">{label}</a>',
            href=href,
            label=label,
            cls="active" if key == active else "",
        )
        for key, href, label in (
            ("batches", "/admin/batches", "Batches"),
            ("tenants", "/admin/tenants", "Tenants"),
            ("reconciliation", "/admin/reconciliation", "Reconciliation"),
        )
    )
    sign_out = Markup("")
    if csrf_token is not None:
        sign_out = render(
            '<form method="post" action="/admin/sign-out" class="sign-out">'
            '<input type="hidden" name="csrf_token" value="{token}">'
            '<button type="submit">Sign out</button></form>',
            token=csrf_token,
        )
    refresh = (
        render('<meta http-equiv="refresh" content="{seconds}">', seconds=LIVE_REFRESH_SECONDS)
        if live
        else Markup("")
    )
    return render(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}
<title>{title} · Reelbatch admin</title>
<link rel="stylesheet" href="{static}/admin.css">
</head>
<body>
<header class="topbar">
  <a class="brand" href="/admin/batches">Reelbatch <span>admin</span></a>
  <nav>{nav}</nav>
  {sign_out}
</header>
<main>
{body}
</main>
</body>
</html>
""",
        refresh=refresh,
        title=title,
        static=STATIC_PREFIX,
        nav=nav,
        sign_out=sign_out,
        body=body,
    )


def sign_in_page(next_path: str, error: str | None) -> Markup:
    """The sign-in form (the admin token, exchanged for a session cookie)."""
    message = (
        render('<p class="notice notice-error" role="alert">{error}</p>', error=error)
        if error
        else Markup("")
    )
    body = render(
        """<section class="card sign-in">
  <h1>Sign in</h1>
  <p class="muted">Enter the admin token (REELBATCH_ADMIN_TOKEN).</p>
  {message}
  <form method="post" action="/admin/sign-in">
    <input type="hidden" name="next" value="{next_path}">
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
    <button type="submit" class="primary">Sign in</button>
  </form>
</section>""",
        message=message,
        next_path=next_path,
    )
    return layout("Sign in", body, csrf_token=None)


def _options(values: Iterable[str], selected: str, all_label: str) -> Markup:
    first = render('<option value="">{label}</option>', label=all_label)
    return join(
        [
            first,
            *(
                render(
                    '<option value="{value}"{sel}>{value}</option>',
                    value=value,
                    sel=Markup(" selected") if value == selected else Markup(""),
                )
                for value in values
            ),
        ]
    )


def batches_page(
    page: Sequence[AdminBatchView],
    next_cursor: str | None,
    filters: Mapping[str, str],
    *,
    csrf_token: str | None,
) -> Markup:
    """Every batch, newest first, with badges and a progress bar per batch."""
    rows = join(
        render(
            """<tr>
  <td data-label="Batch"><a href="/admin/batches/{batch_id}" class="mono">{short_id}</a></td>
  <td data-label="Tenant"><a href="/admin/tenants/{tenant_id}" class="mono">{tenant_short}</a></td>
  <td data-label="Status">{status}</td>
  <td data-label="Progress" class="progress-cell">{progress}<small>{done} / {total}</small></td>
  <td data-label="Frozen" class="num">{frozen}</td>
  <td data-label="Spent" class="num">{spent}</td>
  <td data-label="Refunded" class="num">{refunded}</td>
  <td data-label="Settlement">{settlement}</td>
  <td data-label="Created">{created}</td>
</tr>""",
            batch_id=batch.batch_id,
            short_id=batch.batch_id[:8],
            tenant_id=batch.tenant_id,
            tenant_short=batch.tenant_id[:8],
            status=badge(batch.status),
            progress=progress(batch),
            done=batch.total_count - batch.pending_count,
            total=batch.total_count,
            frozen=_credits(batch.frozen_credits),
            spent=_credits(batch.credits_spent),
            refunded=_credits(batch.refunded_credits),
            settlement=badge(batch.settlement_status),
            created=_when(batch.created_at),
        )
        for batch in page
    )
    if not page:
        rows = Markup('<tr><td colspan="9" class="empty">No batches match.</td></tr>')
    more = (
        render(
            '<a class="button" href="{href}">Next page →</a>',
            href=_query("/admin/batches", {**filters, "cursor": next_cursor}),
        )
        if next_cursor
        else Markup("")
    )
    body = render(
        """<h1>Batches</h1>
<form method="get" action="/admin/batches" class="filters">
  <label>Status <select name="status">{statuses}</select></label>
  <label>Settlement <select name="settlement_status">{settlements}</select></label>
  <label>Tenant <input name="tenant_id" value="{tenant_id}" placeholder="tenant id"></label>
  <button type="submit">Filter</button>
</form>
<div class="table-wrap">
<table class="data responsive" id="batches">
  <thead><tr><th>Batch</th><th>Tenant</th><th>Status</th><th>Progress</th><th class="num">Frozen</th>
  <th class="num">Spent</th><th class="num">Refunded</th><th>Settlement</th><th>Created</th></tr></thead>
  <tbody>{rows}</tbody>
</table>
</div>
<nav class="pager">{more}</nav>""",
        statuses=_options(BATCH_STATUSES, filters.get("status", ""), "any"),
        settlements=_options(SETTLEMENT_STATUSES, filters.get("settlement_status", ""), "any"),
        tenant_id=filters.get("tenant_id", ""),
        rows=rows,
        more=more,
    )
    return layout(
        "Batches", body, csrf_token=csrf_token, live=any(is_live(b) for b in page), active="batches"
    )


def _stat(label: str, key: str, value: str, tone: str = "") -> Markup:
    return render(
        '<div class="stat {tone}"><span class="label">{label}</span>'
        '<span class="value" data-stat="{key}">{value}</span></div>',
        tone=tone,
        label=label,
        key=key,
        value=value,
    )


def _tabs(batch_id: str, active: str) -> Markup:
    return render(
        '<nav class="tabs" role="tablist">{links}</nav>',
        links=join(
            render(
                '<a role="tab" href="/admin/batches/{batch_id}?tab={key}" class="{cls}" '
                'aria-selected="{selected}" data-tab="{key}">{label}</a>',
                batch_id=batch_id,
                key=key,
                label=label,
                cls="active" if key == active else "",
                selected="true" if key == active else "false",
            )
            for key, label in TABS
        ),
    )


def _batch_link(batch_id: str) -> Markup:
    return render(
        '<a class="mono" href="/admin/batches/{batch_id}">{short_id}</a>',
        batch_id=batch_id,
        short_id=batch_id[:8],
    )


def _retry_links(batch: AdminBatchView) -> Markup:
    """The batch this one retries and the batches retrying it (retry-failed), when there are any."""
    parts = []
    if batch.retry_of:
        parts.append(render(" · retry of {link}", link=_batch_link(batch.retry_of)))
    if batch.retries:
        parts.append(
            render(" · retried as {links}", links=Markup(", ".join(map(_batch_link, batch.retries))))
        )
    return join(parts)


def batch_page(batch: AdminBatchDetail, tab: str, content: Markup, *, csrf_token: str | None) -> Markup:
    """A batch: header with progress, the tab bar and the active tab's content."""
    live = is_live(batch)
    header = render(
        """<p class="crumbs"><a href="/admin/batches">Batches</a> / <span class="mono">{batch_id}</span></p>
<div class="batch-head">
  <h1>Batch <span class="mono">{short_id}</span> {status} {settlement}</h1>
  {live_note}
</div>
<p class="muted">Tenant <a class="mono" href="/admin/tenants/{tenant_id}">{tenant_id}</a>
  · request <span class="mono">{request_id}</span>{retry_links}</p>
<div class="progress-line">{progress}<span>{done} / {total} finished</span></div>
{tabs}
<section class="tab-panel" id="tab-{tab}">{content}</section>""",
        batch_id=batch.batch_id,
        short_id=batch.batch_id[:8],
        status=badge(batch.status),
        settlement=badge(batch.settlement_status),
        live_note=Markup('<span class="live" title="This page refreshes itself">● live</span>')
        if live
        else Markup(""),
        tenant_id=batch.tenant_id,
        request_id=batch.request_id or "—",
        retry_links=_retry_links(batch),
        progress=progress(batch),
        done=batch.total_count - batch.pending_count,
        total=batch.total_count,
        tabs=_tabs(batch.batch_id, tab),
        tab=tab,
        content=content,
    )
    # Only the overview refreshes itself: a refresh would lose the place in a long task list.
    return layout(
        f"Batch {batch.batch_id[:8]}",
        header,
        csrf_token=csrf_token,
        live=live and tab == "overview",
        active="batches",
    )


def _failures_by_fault(failures: Sequence[FailureGroupView]) -> Markup:
    if not failures:
        return Markup('<p class="muted" id="no-failures">No failed or cancelled tasks.</p>')
    by_fault: dict[str, list[FailureGroupView]] = {}
    for group in failures:
        by_fault.setdefault(group.fault, []).append(group)
    blocks = []
    for fault, label in FAULT_LABELS.items():
        groups = by_fault.get(fault)
        if not groups:
            continue
        rows = join(
            render(
                '<tr><td><span class="mono">{failure_type}</span></td><td class="num">{count}</td>'
                '<td class="num">{credits}</td></tr>',
                failure_type=group.failure_type,
                count=group.count,
                credits=_credits(group.refunded_credits),
            )
            for group in groups
        )
        blocks.append(
            render(
                '<div class="fault fault-{fault}" data-fault="{fault}">'
                "<h3>{label} <small>{count} task(s)</small></h3>"
                '<table class="data compact"><thead><tr><th>Failure type</th><th class="num">Tasks</th>'
                '<th class="num">Refunded</th></tr></thead><tbody>{rows}</tbody></table></div>',
                fault=fault,
                label=label,
                count=sum(group.count for group in groups),
                rows=rows,
            )
        )
    return render('<div class="faults">{blocks}</div>', blocks=join(blocks))


def overview_tab(batch: AdminBatchDetail) -> Markup:
    """Status, counts, money, margin, timing and whose fault the failures were."""
    stats = join(
        [
            _stat("Status", "status", batch.status),
            _stat("Total", "total", _credits(batch.total_count)),
            _stat("Success", "success", _credits(batch.success_count), "good"),
            _stat("Failed", "failed", _credits(batch.failed_count), "bad" if batch.failed_count else ""),
            _stat("Cancelled", "cancelled", _credits(batch.cancelled_count)),
            _stat("Pending", "pending", _credits(batch.pending_count)),
        ]
    )
    money = join(
        [
            _stat("Frozen Credits", "frozen", _credits(batch.frozen_credits)),
            _stat("Credits Spent", "spent", _credits(batch.credits_spent)),
            _stat("Refunded", "refunded", _credits(batch.refunded_credits), "accent"),
            _stat("Net", "net", _credits(batch.net_spent)),
            _stat("Margin", "margin", f"{batch.margin.margin_percent:.1f}%"),
        ]
    )
    timing = batch.timing
    duration = f"{timing.duration_seconds:,.1f} s" if timing.duration_seconds is not None else "running"
    return render(
        """<div class="stats">{stats}</div>
<h2>Money</h2>
<div class="stats">{money}</div>
<div class="columns">
  <section class="card">
    <h2>Whose fault?</h2>
    {failures}
  </section>
  <section class="card">
    <h2>Margin</h2>
    <dl class="facts">
      <dt>Revenue</dt><dd>{revenue_credits} credits · {revenue}</dd>
      <dt>Provider cost</dt><dd>{cost}</dd>
      <dt>Margin</dt><dd>{margin} ({percent:.1f}%)</dd>
    </dl>
    <h2>Timing</h2>
    <dl class="facts">
      <dt>Created</dt><dd>{created}</dd>
      <dt>Queued</dt><dd>{queued}</dd>
      <dt>First task started</dt><dd>{started}</dd>
      <dt>Finished</dt><dd>{finished}</dd>
      <dt>Settled</dt><dd>{settled}</dd>
      <dt>Duration</dt><dd>{duration}</dd>
      <dt>Provider attempts</dt><dd>{attempts}</dd>
    </dl>
  </section>
</div>""",
        stats=stats,
        money=money,
        failures=_failures_by_fault(batch.failures),
        revenue_credits=_credits(batch.margin.revenue_credits),
        revenue=_usd(batch.margin.revenue_usd_micros),
        cost=_usd(batch.margin.provider_cost_usd_micros),
        margin=_usd(batch.margin.margin_usd_micros),
        percent=batch.margin.margin_percent,
        created=_when(timing.created_at),
        queued=_when(timing.queued_at),
        started=_when(timing.first_started_at),
        finished=_when(timing.finished_at),
        settled=_when(timing.settled_at),
        duration=duration,
        attempts=timing.total_attempts,
    )


def tasks_tab(batch_id: str, page: TaskPage, filters: Mapping[str, str]) -> Markup:
    """A page of tasks with status and failure type filters."""
    rows = join(
        render(
            """<tr>
  <td data-label="#" class="num">{index}</td>
  <td data-label="Status">{status}</td>
  <td data-label="Model">{model}</td>
  <td data-label="Prompt" class="prompt" title="{prompt}">{prompt_preview}</td>
  <td data-label="Attempts" class="num">{attempts}</td>
  <td data-label="Failure type">{failure_type}</td>
  <td data-label="Error">{error}</td>
  <td data-label="Video">{video}</td>
</tr>""",
            index=task.batch_index,
            status=badge(task.status),
            model=task.model,
            prompt=task.prompt,
            prompt_preview=task.prompt
            if len(task.prompt) <= PROMPT_PREVIEW_CHARS
            else task.prompt[:PROMPT_PREVIEW_CHARS] + "…",
            attempts=task.attempts,
            failure_type=task.failure_type or "—",
            error=task.error_message or "—",
            # Videos are served only through per-tenant signed links (ADR-021); the dashboard shows
            # that the asset exists rather than a link that would answer 403.
            video="stored" if task.video_url else "—",
        )
        for task in page.items
    )
    if not page.items:
        rows = Markup('<tr><td colspan="8" class="empty">No tasks match.</td></tr>')
    base = f"/admin/batches/{batch_id}"
    pager = []
    if filters.get("cursor"):
        pager.append(
            render(
                '<a class="button" href="{href}">← First page</a>',
                href=_query(base, {**filters, "cursor": None}),
            )
        )
    if page.next_cursor:
        pager.append(
            render(
                '<a class="button" id="next-page" href="{href}">Next page →</a>',
                href=_query(base, {**filters, "cursor": page.next_cursor}),
            )
        )
    return render(
        """<form method="get" action="{base}" class="filters">
  <input type="hidden" name="tab" value="tasks">
  <label>Status <select name="status">{statuses}</select></label>
  <label>Failure type <select name="failure_type">{failure_types}</select></label>
  <label>Per page <select name="limit">{limits}</select></label>
  <button type="submit">Filter</button>
</form>
<div class="table-wrap">
<table class="data responsive" id="tasks">
  <thead><tr><th class="num">#</th><th>Status</th><th>Model</th><th>Prompt</th><th class="num">Attempts</th>
  <th>Failure type</th><th>Error</th><th>Video</th></tr></thead>
  <tbody>{rows}</tbody>
</table>
</div>
<nav class="pager">{pager}</nav>""",
        base=base,
        statuses=_options(TASK_STATUSES, filters.get("status", ""), "any"),
        failure_types=_options(FAILURE_TYPES, filters.get("failure_type", ""), "any"),
        limits=_options(("10", "50", "200"), filters.get("limit", ""), "default"),
        rows=rows,
        pager=join(pager),
    )


def billing_tab(batch_id: str, billing: BatchBillingView, cursor: str) -> Markup:
    """Upfront, captures, refunds, net and the batch's ledger entries."""
    stats = join(
        [
            _stat("Upfront Total", "upfront", _credits(billing.upfront_total)),
            _stat("Capture Total", "captured", _credits(billing.capture_total)),
            _stat("Refund Total", "refund", _credits(billing.refund_total), "accent"),
            _stat("Released", "released", _credits(billing.release_total)),
            _stat("Net Spent", "net-spent", _credits(billing.net_spent), "good"),
            _stat("Still held", "held", _credits(billing.held_credits)),
        ]
    )
    rows = join(
        render(
            """<tr class="ref-{ref_type}">
  <td data-label="Type">{ref_type}</td>
  <td data-label="Reference" class="mono">{ref_id}</td>
  <td data-label="From → to">{from_account} → {to_account}</td>
  <td data-label="Amount" class="num">{amount}</td>
  <td data-label="Balance change" class="num">{delta}</td>
  <td data-label="At">{created}</td>
</tr>""",
            ref_type=entry.ref_type,
            ref_id=entry.ref_id,
            from_account=entry.from_account,
            to_account=entry.to_account,
            amount=_credits(entry.amount),
            delta=f"{entry.credits_delta:+,}" if entry.credits_delta else "0",
            created=_when(entry.created_at),
        )
        for entry in billing.entries
    )
    base = f"/admin/batches/{batch_id}"
    pager = []
    if cursor:
        pager.append(
            render('<a class="button" href="{href}">← First page</a>', href=_query(base, {"tab": "billing"}))
        )
    if billing.next_cursor:
        pager.append(
            render(
                '<a class="button" href="{href}">More entries →</a>',
                href=_query(base, {"tab": "billing", "cursor": billing.next_cursor}),
            )
        )
    return render(
        """<div class="stats">{stats}</div>
<p class="muted">Net Spent = Upfront - Refunds - Released. Captures move held credits to revenue and do not
change the customer's available balance.</p>
<details open class="card"><summary>Ledger entries ({count} on this page)</summary>
<div class="table-wrap">
<table class="data responsive" id="ledger">
  <thead><tr><th>Type</th><th>Reference</th><th>From → to</th><th class="num">Amount</th>
  <th class="num">Balance change</th><th>At</th></tr></thead>
  <tbody>{rows}</tbody>
</table>
</div>
<nav class="pager">{pager}</nav>
</details>""",
        stats=stats,
        count=len(billing.entries),
        rows=rows,
        pager=join(pager),
    )


def webhooks_tab(deliveries: DeliveryPage | None, webhook_url: str | None) -> Markup:
    """Deliveries with every attempt; a notice when the webhook service cannot be reached."""
    target = render(
        '<p class="muted">Batch webhook URL: <span class="mono">{url}</span></p>', url=webhook_url or "none"
    )
    if deliveries is None:
        return join(
            [
                target,
                Markup(
                    '<p class="notice notice-error">'
                    "The webhook service is unavailable; try again shortly.</p>"
                ),
            ]
        )
    if not deliveries.items:
        return join(
            [target, Markup('<p class="muted" id="no-deliveries">No webhook deliveries for this batch.</p>')]
        )
    cards = []
    for delivery in deliveries.items:
        attempts = join(
            render(
                '<tr><td class="num">{number}</td><td>{at}</td><td class="num">{status}</td>'
                '<td>{error}</td><td class="num">{duration} ms</td><td class="mono small">{body}</td></tr>',
                number=attempt.attempt_number,
                at=_when(attempt.attempted_at),
                status=attempt.http_status if attempt.http_status is not None else "—",
                error=attempt.error_class or "ok",
                duration=attempt.duration_ms,
                body=attempt.response_body[:200],
            )
            for attempt in delivery.attempts
        )
        cards.append(
            render(
                """<article class="card delivery" data-delivery="{message_id}">
  <h3>{event_type} {status} <small>{count} attempt(s)</small></h3>
  <p class="muted mono small">{message_id} → {url}</p>
  <p class="muted small">created {created} · delivered {delivered} · next attempt {next_at}</p>
  <div class="table-wrap"><table class="data compact attempts">
    <thead><tr><th class="num">#</th><th>At</th><th class="num">HTTP</th><th>Result</th>
    <th class="num">Took</th><th>Response</th></tr></thead>
    <tbody>{attempts}</tbody>
  </table></div>
</article>""",
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                status=badge(delivery.status),
                count=len(delivery.attempts),
                url=delivery.url,
                created=_when(delivery.created_at),
                delivered=_when(delivery.delivered_at),
                next_at=_when(delivery.next_attempt_at),
                attempts=attempts,
            )
        )
    return join([target, *cards])


def tenants_page(page: TenantPage, cursor: str, *, csrf_token: str | None) -> Markup:
    """Every tenant with its balances."""
    rows = join(
        render(
            '<tr><td data-label="Name"><a href="/admin/tenants/{tenant_id}">{name}</a></td>'
            '<td data-label="Tenant" class="mono">{tenant_id}</td>'
            '<td data-label="Available" class="num">{available}</td>'
            '<td data-label="Held" class="num">{held}</td><td data-label="Created">{created}</td></tr>',
            tenant_id=tenant.tenant_id,
            name=tenant.name,
            available=_credits(tenant.available_credits),
            held=_credits(tenant.held_credits),
            created=_when(tenant.created_at),
        )
        for tenant in page.items
    )
    more = (
        render(
            '<a class="button" href="{href}">Next page →</a>',
            href=_query("/admin/tenants", {"cursor": page.next_cursor}),
        )
        if page.next_cursor
        else Markup("")
    )
    body = render(
        """<h1>Tenants</h1>
<div class="table-wrap"><table class="data responsive" id="tenants">
<thead><tr><th>Name</th><th>Tenant</th><th class="num">Available</th><th class="num">Held</th>
<th>Created</th></tr></thead>
<tbody>{rows}</tbody></table></div>
<nav class="pager">{more}</nav>""",
        rows=rows,
        more=more,
    )
    return layout("Tenants", body, csrf_token=csrf_token, active="tenants")


def tenant_page(
    tenant_id: str,
    credits: CreditsView,
    ledger: LedgerPage,
    batches: Sequence[AdminBatchView],
    *,
    csrf_token: str | None,
) -> Markup:
    """One tenant: balances, recent batches and the ledger of its available balance."""
    rows = join(
        render(
            '<tr><td data-label="Type">{ref_type}</td><td data-label="Reference" class="mono">{ref_id}</td>'
            '<td data-label="Change" class="num">{delta}</td>'
            '<td data-label="Balance" class="num">{balance}</td>'
            '<td data-label="At">{created}</td></tr>',
            ref_type=entry.ref_type,
            ref_id=entry.ref_id,
            delta=f"{entry.credits_delta:+,}",
            balance=_credits(entry.balance_after),
            created=_when(entry.created_at),
        )
        for entry in ledger.items
    )
    batch_rows = join(
        render(
            '<li><a class="mono" href="/admin/batches/{batch_id}">{short}</a> {status} {progress}</li>',
            batch_id=batch.batch_id,
            short=batch.batch_id[:8],
            status=badge(batch.status),
            progress=progress(batch),
        )
        for batch in batches
    )
    more = (
        render(
            '<a class="button" href="{href}">Older entries →</a>',
            href=_query(f"/admin/tenants/{tenant_id}", {"cursor": ledger.next_cursor}),
        )
        if ledger.next_cursor
        else Markup("")
    )
    body = render(
        """<p class="crumbs"><a href="/admin/tenants">Tenants</a> / <span class="mono">{tenant_id}</span></p>
<h1>Tenant <span class="mono">{short}</span></h1>
<div class="stats">{available}{held}</div>
<div class="columns">
<section class="card"><h2>Recent batches</h2><ul class="batch-list">{batch_rows}</ul>
<a href="/admin/batches?tenant_id={tenant_id}">All batches of this tenant</a></section>
<section class="card"><h2>Ledger</h2>
<div class="table-wrap"><table class="data responsive" id="tenant-ledger">
<thead><tr><th>Type</th><th>Reference</th><th class="num">Change</th><th class="num">Balance</th>
<th>At</th></tr></thead>
<tbody>{rows}</tbody></table></div>
<nav class="pager">{more}</nav></section>
</div>""",
        tenant_id=tenant_id,
        short=tenant_id[:8],
        available=_stat("Available", "available", _credits(credits.available_credits), "good"),
        held=_stat("Held", "held", _credits(credits.held_credits)),
        batch_rows=batch_rows or Markup('<li class="muted">No batches yet.</li>'),
        rows=rows,
        more=more,
    )
    return layout(f"Tenant {tenant_id[:8]}", body, csrf_token=csrf_token, active="tenants")


def reconciliation_page(report: ReconciliationView, *, csrf_token: str | None) -> Markup:
    """The result of checking every credit."""
    if report.discrepancies:
        findings = render(
            '<p class="notice notice-error" id="unbalanced">{count} discrepancy(ies) found.</p>'
            '<div class="table-wrap"><table class="data responsive" id="discrepancies">'
            "<thead><tr><th>Invariant</th>"
            "<th>Subject</th><th>What does not add up</th></tr></thead><tbody>{rows}</tbody></table></div>",
            count=len(report.discrepancies),
            rows=join(
                render(
                    '<tr><td data-label="Invariant">{invariant}</td>'
                    '<td data-label="Subject" class="mono">{subject}</td>'
                    '<td data-label="Problem">{message}</td></tr>',
                    invariant=found.invariant,
                    subject=found.subject,
                    message=found.message,
                )
                for found in report.discrepancies
            ),
        )
    else:
        findings = Markup(
            '<p class="notice notice-ok" id="balanced">The books balance: no discrepancies.</p>'
        )
    body = render(
        """<h1>Reconciliation</h1>
<p class="muted">Checked {accounts} accounts and {batches} batch holds at {at}: I1 (batch money), I2 (balances
equal entries, nothing negative, the ledger sums to zero) and I3 (each effect once).</p>
{findings}
<p><a class="button" href="/api/admin/ledger.csv">Download the whole ledger (CSV)</a></p>""",
        accounts=report.accounts_checked,
        batches=report.batches_checked,
        at=_when(report.checked_at),
        findings=findings,
    )
    return layout("Reconciliation", body, csrf_token=csrf_token, active="reconciliation")


def not_found_page(message: str, *, csrf_token: str | None) -> Markup:
    """A friendly 404."""
    body = render(
        '<section class="card"><h1>Not found</h1><p>{message}</p>'
        '<a href="/admin/batches">Back to batches</a></section>',
        message=message,
    )
    return layout("Not found", body, csrf_token=csrf_token)
