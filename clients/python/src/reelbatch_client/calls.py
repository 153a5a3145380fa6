"""Every customer operation as a `Call`: what to send and how to read the answer, with no I/O.

The sync `Client` and the async `AsyncClient` both run these, so an endpoint is described once.
A paged list is a function of the cursor (`PageCall`); the clients' iterators follow `next_cursor`
until it is empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from reelbatch_client import models as m

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)
BATCHES = "/api/enterprise/video-batch"
JSONL = "application/jsonl"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reader of its 2xx answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    files: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


PageCall = Callable[[str | None], Call[Page[T]]]


def _model(model: type[ModelT]) -> Callable[[httpx.Response], ModelT]:
    return lambda response: model.model_validate_json(response.content)


def _page(model: type[ModelT]) -> Callable[[httpx.Response], Page[ModelT]]:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> Page[ModelT]:
        body = response.json()
        return Page(adapter.validate_python(body["items"]), body.get("next_cursor") or None)

    return parse


def _bytes(response: httpx.Response) -> bytes:
    return response.content


def _query(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones (None)."""
    return {name: value for name, value in values.items() if value is not None}


def _metadata_query(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {f"metadata[{key}]": value for key, value in (metadata or {}).items()}


def idempotency_headers(key: str | None) -> dict[str, str]:
    """An `Idempotency-Key` (a fresh UUID unless given): the same on every retry of this call."""
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def create_request(
    items: Sequence[m.BatchItem | Mapping[str, Any]],
    *,
    webhook_url: str | None,
    name: str | None,
    metadata: Mapping[str, str] | None,
    deadline_seconds: int | None,
) -> m.CreateBatchRequest:
    """The JSON create body of items given as models or dicts (validated here, before sending)."""
    return m.CreateBatchRequest(
        items=[m.BatchItem.model_validate(item) for item in items],
        webhook_url=webhook_url,
        name=name,
        metadata=dict(metadata) if metadata else None,
        deadline_seconds=deadline_seconds,
    )


def create_batch(request: m.CreateBatchRequest, idempotency_key: str | None) -> Call[m.BatchAccepted]:
    """POST the JSON form of a create."""
    return Call(
        "POST",
        BATCHES,
        _model(m.BatchAccepted),
        json=request.model_dump(mode="json", exclude_none=True),
        headers=idempotency_headers(idempotency_key),
    )


def create_batch_jsonl(
    jsonl: bytes,
    *,
    idempotency_key: str | None,
    webhook_url: str | None = None,
    deadline_seconds: int | None = None,
    name: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Call[m.BatchAccepted]:
    """POST items as JSONL (the batch's own fields as query parameters)."""
    params = _query(webhook_url=webhook_url, deadline_seconds=deadline_seconds, name=name)
    return Call(
        "POST",
        BATCHES,
        _model(m.BatchAccepted),
        params={**params, **_metadata_query(metadata)},
        content=jsonl,
        headers={"Content-Type": JSONL, **idempotency_headers(idempotency_key)},
    )


def get_batch(batch_id: str) -> Call[m.Batch]:
    """GET one batch."""
    return Call("GET", f"{BATCHES}/{batch_id}", _model(m.Batch))


def list_batches(
    *, status: str | None = None, name: str | None = None, metadata: Mapping[str, str] | None = None
) -> PageCall[m.Batch]:
    """The tenant's batches, newest first."""
    filters = {**_query(status=status, name=name), **_metadata_query(metadata)}
    return lambda cursor: Call(
        "GET", BATCHES, _page(m.Batch), params={**filters, **_query(cursor=cursor, limit=1000)}
    )


def list_tasks(batch_id: str, *, status: str | None = None) -> PageCall[m.Task]:
    """A batch's items in batch order."""
    return lambda cursor: Call(
        "GET",
        f"{BATCHES}/{batch_id}/tasks",
        _page(m.Task),
        params=_query(status=status, cursor=cursor, limit=1000),
    )


def cancel_batch(batch_id: str) -> Call[m.Batch]:
    """Cancel what has not started (refunded at once)."""
    return Call("POST", f"{BATCHES}/{batch_id}/cancel", _model(m.Batch))


def retry_failed(
    batch_id: str, failure_types: list[m.FailureType] | None, idempotency_key: str | None
) -> Call[m.BatchAccepted]:
    """A new batch of the failed items of a finished one (idempotent per source batch)."""
    body = m.RetryFailedRequest(failure_types=failure_types).model_dump(exclude_none=True)
    return Call(
        "POST",
        f"{BATCHES}/{batch_id}/retry-failed",
        _model(m.BatchAccepted),
        json=body,
        headers=idempotency_headers(idempotency_key),
    )


def batch_file(batch_id: str, which: str, fmt: str) -> Call[bytes]:
    """The results or errors file (`which`), JSONL or CSV, as bytes."""
    return Call("GET", f"{BATCHES}/{batch_id}/{which}", _bytes, params={"format": fmt})


def videos_zip(batch_id: str) -> Call[bytes]:
    """Every video of the batch in one zip (with `manifest.jsonl`)."""
    return Call("GET", f"{BATCHES}/{batch_id}/videos.zip", _bytes)


def video_link(batch_id: str, task_id: str, mode: str = "download") -> Call[m.VideoLink]:
    """A short-lived signed URL of one video (fetch it without the API key)."""
    return Call(
        "GET", f"{BATCHES}/{batch_id}/tasks/{task_id}/video", _model(m.VideoLink), params={"mode": mode}
    )


def get_credits() -> Call[m.Credits]:
    """The balance."""
    return Call("GET", "/api/enterprise/credits", _model(m.Credits))


def list_ledger(*, batch_id: str | None = None) -> PageCall[m.LedgerEntry]:
    """Movements of the available balance, newest first."""
    return lambda cursor: Call(
        "GET",
        "/api/enterprise/ledger",
        _page(m.LedgerEntry),
        params=_query(batch_id=batch_id, cursor=cursor, limit=1000),
    )


def batch_billing(batch_id: str, cursor: str | None = None) -> Call[m.BatchBilling]:
    """A batch's money: totals and a page of its transfers (captures included), in order."""
    params = _query(cursor=cursor, limit=1000)
    return Call("GET", f"{BATCHES}/{batch_id}/billing", _model(m.BatchBilling), params=params)


def ledger_csv(created_from: str | None = None, created_to: str | None = None) -> Call[bytes]:
    """The ledger as CSV between two RFC 3339 instants."""
    params = _query(created_from=created_from, created_to=created_to)
    return Call("GET", "/api/enterprise/ledger.csv", _bytes, params=params)


def statement(month: str | None = None) -> Call[m.Statement]:
    """A month's statement (`YYYY-MM`, UTC; the current month when None)."""
    return Call("GET", "/api/enterprise/statement", _model(m.Statement), params=_query(month=month))


def list_models() -> Call[m.PriceList]:
    """Every model with its settings and prices."""
    return Call("GET", "/api/enterprise/models", _model(m.PriceList))


def list_packs() -> Call[m.PackCatalog]:
    """The credit packs on sale."""
    return Call("GET", "/api/enterprise/packs", _model(m.PackCatalog))


def upload_file(filename: str, content: bytes, content_type: str) -> Call[m.InputFile]:
    """Upload an input image (first/last frame, reference)."""
    return Call(
        "POST",
        "/api/enterprise/files",
        _model(m.InputFile),
        files={"file": (filename, content, content_type)},
    )


def list_api_keys() -> Call[m.ApiKeyList]:
    """The tenant's API keys."""
    return Call("GET", "/api/enterprise/api-keys", _model(m.ApiKeyList))


def revoke_api_key(key_id: str) -> Call[m.ApiKey]:
    """Revoke one of the tenant's keys."""
    return Call("DELETE", f"/api/enterprise/api-keys/{key_id}", _model(m.ApiKey))


def create_webhook_endpoint(endpoint: m.EndpointIn) -> Call[m.WebhookEndpointCreated]:
    """Register an endpoint (its secret is in the answer, once)."""
    return Call(
        "POST",
        "/api/enterprise/webhook-endpoints",
        _model(m.WebhookEndpointCreated),
        json=endpoint.model_dump(mode="json"),
    )


def list_webhook_endpoints() -> PageCall[m.WebhookEndpoint]:
    """The registered endpoints."""
    return lambda cursor: Call(
        "GET",
        "/api/enterprise/webhook-endpoints",
        _page(m.WebhookEndpoint),
        params=_query(cursor=cursor, limit=1000),
    )


def delete_webhook_endpoint(endpoint_id: str) -> Call[m.WebhookEndpoint]:
    """Remove an endpoint."""
    return Call("DELETE", f"/api/enterprise/webhook-endpoints/{endpoint_id}", _model(m.WebhookEndpoint))


def rotate_webhook_endpoint_secret(endpoint_id: str) -> Call[m.WebhookEndpointSecretRotated]:
    """A new secret for an endpoint (the old one verifies for a while)."""
    return Call(
        "POST",
        f"/api/enterprise/webhook-endpoints/{endpoint_id}/rotate-secret",
        _model(m.WebhookEndpointSecretRotated),
    )


def list_webhook_messages(*, batch_id: str | None = None) -> PageCall[m.WebhookMessage]:
    """Webhook messages and their delivery attempts, newest first."""
    return lambda cursor: Call(
        "GET",
        "/api/enterprise/webhook-messages",
        _page(m.WebhookMessage),
        params=_query(batch_id=batch_id, cursor=cursor, limit=1000),
    )


def redeliver_webhook_message(message_id: str) -> Call[m.WebhookMessage]:
    """Send a message again."""
    return Call("POST", f"/api/enterprise/webhook-messages/{message_id}/redeliver", _model(m.WebhookMessage))


def get_signing_secret() -> Call[m.SigningSecret]:
    """The secret that signs the webhooks of batches' `webhook_url`."""
    return Call("GET", "/api/enterprise/webhook-secret", _model(m.SigningSecret))


def rotate_signing_secret() -> Call[m.SigningSecret]:
    """A new signing secret (the previous one verifies for a while)."""
    return Call("POST", "/api/enterprise/webhook-secret/rotate", _model(m.SigningSecret))


def _budget_path(key_id: str | None, project: str | None) -> str:
    if key_id is not None:
        return f"/api/enterprise/api-keys/{key_id}/budget"
    if project is not None:
        return f"/api/enterprise/projects/{quote(project, safe='')}/budget"
    return "/api/enterprise/budget"


def get_budget(*, key_id: str | None = None, project: str | None = None) -> Call[m.Budget]:
    """A monthly budget and its use: the tenant's, one key's or one project's."""
    return Call("GET", _budget_path(key_id, project), _model(m.Budget))


def set_budget(
    monthly_credits: int | None, *, key_id: str | None = None, project: str | None = None
) -> Call[m.Budget]:
    """Sets (None: removes) a monthly budget; the key needs the `billing` scope."""
    body = m.BudgetUpdate(monthly_credits=monthly_credits).model_dump(mode="json")
    return Call("PUT", _budget_path(key_id, project), _model(m.Budget), json=body)


def list_budgets() -> Call[m.BudgetList]:
    """Every budget of the tenant with its use this month."""
    return Call("GET", "/api/enterprise/budgets", _model(m.BudgetList))


def get_alert_thresholds() -> Call[m.AlertThresholds]:
    """The tenant's spend alert thresholds."""
    return Call("GET", "/api/enterprise/alerts", _model(m.AlertThresholds))


def set_alert_thresholds(
    *, low_balance_credits: int | None = None, budget_percent: int | None = None
) -> Call[m.AlertThresholds]:
    """Replaces the spend alert thresholds (None: that alert off); the key needs the `billing` scope."""
    body = m.AlertThresholdsUpdate(low_balance_credits=low_balance_credits, budget_percent=budget_percent)
    return Call("PUT", "/api/enterprise/alerts", _model(m.AlertThresholds), json=body.model_dump(mode="json"))


def get_auto_top_up() -> Call[m.AutoTopUp]:
    """The tenant's automatic top-up settings and latest purchases."""
    return Call("GET", "/api/enterprise/auto-top-up", _model(m.AutoTopUp))


def set_auto_top_up(
    *, enabled: bool, threshold_credits: int, pack_id: str, max_per_month: int = 1
) -> Call[m.AutoTopUp]:
    """Replaces the automatic top-up settings; the key needs the `billing` scope."""
    body = m.AutoTopUpUpdate(
        enabled=enabled, threshold_credits=threshold_credits, pack_id=pack_id, max_per_month=max_per_month
    )
    return Call("PUT", "/api/enterprise/auto-top-up", _model(m.AutoTopUp), json=body.model_dump(mode="json"))


def create_quote(request: m.CreateBatchRequest) -> Call[m.Quote]:
    """Prices a create body without freezing anything; cite the quote in the create."""
    return Call(
        "POST",
        "/api/enterprise/quotes",
        _model(m.Quote),
        json=request.model_dump(mode="json", exclude_none=True),
    )


# operationId of the customer OpenAPI -> the function above that calls it (the coverage test
# checks that every customer operation has one). `get_video` is the signed link itself, fetched
# without credentials by the download helpers; `get_pricing` is the alias of `list_models`.
OPERATIONS: dict[str, Callable[..., object]] = {
    "create_video_batch": create_batch,
    "list_video_batches": list_batches,
    "get_video_batch": get_batch,
    "list_video_batch_tasks": list_tasks,
    "cancel_video_batch": cancel_batch,
    "retry_failed_video_batch": retry_failed,
    "get_credits": get_credits,
    "list_ledger_entries": list_ledger,
    "get_video_batch_billing": batch_billing,
    "get_batch_results": batch_file,
    "get_batch_errors": batch_file,
    "get_batch_videos_zip": videos_zip,
    "list_own_keys": list_api_keys,
    "revoke_own_key": revoke_api_key,
    "export_own_ledger": ledger_csv,
    "list_models": list_models,
    "get_pricing": list_models,
    "upload_file": upload_file,
    "list_packs": list_packs,
    "get_statement": statement,
    "get_video_link": video_link,
    "get_video": video_link,
    "create_webhook_endpoint": create_webhook_endpoint,
    "list_webhook_endpoints": list_webhook_endpoints,
    "delete_webhook_endpoint": delete_webhook_endpoint,
    "rotate_webhook_endpoint_secret": rotate_webhook_endpoint_secret,
    "list_webhook_messages": list_webhook_messages,
    "redeliver_webhook_message": redeliver_webhook_message,
    "get_webhook_signing_secret": get_signing_secret,
    "rotate_webhook_signing_secret": rotate_signing_secret,
    "get_tenant_budget": get_budget,
    "set_tenant_budget": set_budget,
    "list_budgets": list_budgets,
    "get_key_budget": get_budget,
    "set_key_budget": set_budget,
    "get_project_budget": get_budget,
    "set_project_budget": set_budget,
    "get_alert_thresholds": get_alert_thresholds,
    "set_alert_thresholds": set_alert_thresholds,
    "get_auto_top_up": get_auto_top_up,
    "set_auto_top_up": set_auto_top_up,
    "create_quote": create_quote,
}
