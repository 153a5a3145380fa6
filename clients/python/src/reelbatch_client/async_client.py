"""The asyncio client: the same operations as `Client` (`reelbatch_client.calls`), awaited.

    async with AsyncClient() as client:
        accepted = await client.submit_file("prompts.csv", model="veo-3")
        batch = await client.wait(accepted.batch_id)
        async for task in client.iter_tasks(batch.batch_id): ...

Retries, idempotency keys and typed errors behave exactly as in `Client`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from reelbatch_client import calls
from reelbatch_client import models as m
from reelbatch_client.client import BatchItems
from reelbatch_client.config import ClientSettings
from reelbatch_client.downloads import (
    DownloadProgress,
    DownloadSummary,
    FileFormat,
    ProgressCallback,
    VideoTarget,
    parse_lines,
    range_headers,
    read_result_lines,
    resume_offset,
    sheet_path,
    video_targets,
    write_atomically,
)
from reelbatch_client.errors import APIConnectionError, ReelbatchError, WaitTimeout, error_from_response
from reelbatch_client.inputs import read_items, to_jsonl
from reelbatch_client.retrying import RateLimit, RetryPolicy

T = TypeVar("T")


class AsyncClient:
    """A Reelbatch customer API client for asyncio."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        settings = ClientSettings.resolve(api_key, base_url)
        self.base_url = settings.base_url
        self.retry = retry or RetryPolicy()
        self.rate_limit = RateLimit()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=settings.base_url, headers=settings.headers(), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def _send(
        self, request: httpx.Request, *, stream: bool = False, follow: bool = False
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.send(request, stream=stream, follow_redirects=follow)
            except httpx.TransportError as error:
                wait = self.retry.wait_after_error(error, attempt)
                if wait is None:
                    raise APIConnectionError(f"{request.method} {request.url}: {error!r}") from error
                await self._sleep(wait)
                continue
            self.rate_limit = RateLimit.of(response)
            wait = self.retry.wait_after_response(response, attempt)
            if wait is None:
                if pause := self.rate_limit.pause():
                    await self._sleep(pause)  # pace the next request instead of earning a 429
                return response
            await response.aclose()
            await self._sleep(wait)

    async def _run(self, call: calls.Call[T]) -> T:
        request = self._http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            files=call.files,
            headers=dict(call.headers),
        )
        response = await self._send(request)
        if response.is_error:
            raise error_from_response(response)
        return call.parse(response)

    async def _iterate(self, page_call: calls.PageCall[T]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            page = await self._run(page_call(cursor))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # --- batches (see `Client` for each method's meaning) ---------------------------------------

    async def create_batch(
        self,
        items: BatchItems,
        *,
        webhook_url: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        deadline_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.BatchAccepted:
        """Submits items; the price is frozen before anything runs."""
        request = calls.create_request(
            items, webhook_url=webhook_url, name=name, metadata=metadata, deadline_seconds=deadline_seconds
        )
        return await self._run(calls.create_batch(request, idempotency_key))

    async def submit_file(
        self,
        path: str | Path,
        *,
        model: str | None = None,
        webhook_url: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        deadline_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.BatchAccepted:
        """Submits a CSV or JSONL file of prompts."""
        items = await asyncio.to_thread(read_items, path, model)
        call = calls.create_batch_jsonl(
            to_jsonl(items),
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            deadline_seconds=deadline_seconds,
            name=name if name is not None else Path(path).name,
            metadata=metadata,
        )
        return await self._run(call)

    async def get_batch(self, batch_id: str) -> m.Batch:
        """One batch."""
        return await self._run(calls.get_batch(batch_id))

    def iter_batches(
        self, *, status: str | None = None, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[m.Batch]:
        """Every batch of the tenant, newest first."""
        return self._iterate(calls.list_batches(status=status, name=name, metadata=metadata))

    def iter_tasks(self, batch_id: str, *, status: str | None = None) -> AsyncIterator[m.Task]:
        """Every item of a batch, in batch order."""
        return self._iterate(calls.list_tasks(batch_id, status=status))

    async def cancel(self, batch_id: str) -> m.Batch:
        """Cancels the items not started yet."""
        return await self._run(calls.cancel_batch(batch_id))

    async def retry_failed(
        self,
        batch_id: str,
        *,
        failure_types: list[m.FailureType] | None = None,
        idempotency_key: str | None = None,
    ) -> m.BatchAccepted:
        """A new batch of the failed items."""
        return await self._run(calls.retry_failed(batch_id, failure_types, idempotency_key))

    async def results_file(self, batch_id: str, which: str = "results", fmt: FileFormat = "jsonl") -> bytes:
        """The results (or errors) file as the API sends it."""
        return await self._run(calls.batch_file(batch_id, which, fmt))

    async def results(self, batch_id: str) -> list[m.ResultLine]:
        """The succeeded items' result lines."""
        return parse_lines(await self.results_file(batch_id, "results"))

    async def errors(self, batch_id: str) -> list[m.ResultLine]:
        """The failed and cancelled items' lines."""
        return parse_lines(await self.results_file(batch_id, "errors"))

    async def videos_zip(self, batch_id: str) -> bytes:
        """Every video of the batch in one zip."""
        return await self._run(calls.videos_zip(batch_id))

    async def video_link(self, batch_id: str, task_id: str, mode: str = "download") -> m.VideoLink:
        """A short-lived signed URL of one video."""
        return await self._run(calls.video_link(batch_id, task_id, mode))

    async def credits(self) -> m.Credits:
        """The balance."""
        return await self._run(calls.get_credits())

    def iter_ledger(self, *, batch_id: str | None = None) -> AsyncIterator[m.LedgerEntry]:
        """Every movement of the available balance, newest first."""
        return self._iterate(calls.list_ledger(batch_id=batch_id))

    async def statement(self, month: str | None = None) -> m.Statement:
        """A month's statement."""
        return await self._run(calls.statement(month))

    async def models(self) -> list[m.VideoModel]:
        """Every model with its settings and prices."""
        return (await self._run(calls.list_models())).items

    async def batch_billing(self, batch_id: str, cursor: str | None = None) -> m.BatchBilling:
        """A batch's money: its totals and a page of its transfers; each item's capture or refund
        carries the `ledger_transfer_id` of its task webhook and results line."""
        return await self._run(calls.batch_billing(batch_id, cursor))

    async def ledger_csv(self, created_from: str | None = None, created_to: str | None = None) -> bytes:
        """The ledger as CSV (RFC 3339 bounds)."""
        return await self._run(calls.ledger_csv(created_from, created_to))

    async def packs(self) -> m.PackCatalog:
        """The credit packs on sale."""
        return await self._run(calls.list_packs())

    async def upload_file(self, path: str | Path, content_type: str = "image/png") -> m.InputFile:
        """Uploads an input image; use its `file_id` in `ImageInput`."""
        source = Path(path)
        content = await asyncio.to_thread(source.read_bytes)
        return await self._run(calls.upload_file(source.name, content, content_type))

    async def api_keys(self) -> list[m.ApiKey]:
        """The tenant's API keys."""
        return (await self._run(calls.list_api_keys())).items

    async def revoke_api_key(self, key_id: str) -> m.ApiKey:
        """Revokes a key of the tenant."""
        return await self._run(calls.revoke_api_key(key_id))

    async def budget(self, *, key_id: str | None = None, project: str | None = None) -> m.Budget:
        """A monthly budget and its use (the tenant's, or one key's, or one project's)."""
        return await self._run(calls.get_budget(key_id=key_id, project=project))

    async def set_budget(
        self, monthly_credits: int | None, *, key_id: str | None = None, project: str | None = None
    ) -> m.Budget:
        """Sets (None: removes) a monthly budget; needs a key with the `billing` scope."""
        return await self._run(calls.set_budget(monthly_credits, key_id=key_id, project=project))

    async def budgets(self) -> list[m.Budget]:
        """Every budget of the tenant with its use this month."""
        return (await self._run(calls.list_budgets())).items

    async def alert_thresholds(self) -> m.AlertThresholds:
        """The tenant's spend alert thresholds (`credits.low`, `budget.threshold` webhooks)."""
        return await self._run(calls.get_alert_thresholds())

    async def set_alert_thresholds(
        self, *, low_balance_credits: int | None = None, budget_percent: int | None = None
    ) -> m.AlertThresholds:
        """Replaces the spend alert thresholds (None: that alert off); needs the `billing` scope."""
        return await self._run(
            calls.set_alert_thresholds(low_balance_credits=low_balance_credits, budget_percent=budget_percent)
        )

    async def auto_top_up(self) -> m.AutoTopUp:
        """The tenant's automatic top-up settings and latest purchases."""
        return await self._run(calls.get_auto_top_up())

    async def set_auto_top_up(
        self, *, enabled: bool, threshold_credits: int, pack_id: str, max_per_month: int = 1
    ) -> m.AutoTopUp:
        """Turns automatic top-up on (needs a card saved with Stripe) or off; needs the `billing` scope."""
        return await self._run(
            calls.set_auto_top_up(
                enabled=enabled,
                threshold_credits=threshold_credits,
                pack_id=pack_id,
                max_per_month=max_per_month,
            )
        )

    async def quote(self, request: m.CreateBatchRequest) -> m.Quote:
        """Prices a batch without freezing; create it with `quote_id` to be charged exactly that."""
        return await self._run(calls.create_quote(request))

    async def create_webhook_endpoint(
        self, url: str, event_types: list[str] | None = None, description: str = ""
    ) -> m.WebhookEndpointCreated:
        """Registers an endpoint; its `secret` is shown once."""
        endpoint = m.EndpointIn(url=url, event_types=event_types or [], description=description)
        return await self._run(calls.create_webhook_endpoint(endpoint))

    async def delete_webhook_endpoint(self, endpoint_id: str) -> m.WebhookEndpoint:
        """Removes an endpoint."""
        return await self._run(calls.delete_webhook_endpoint(endpoint_id))

    async def rotate_webhook_endpoint_secret(self, endpoint_id: str) -> m.WebhookEndpointSecretRotated:
        """A new secret for an endpoint."""
        return await self._run(calls.rotate_webhook_endpoint_secret(endpoint_id))

    async def redeliver_webhook_message(self, message_id: str) -> m.WebhookMessage:
        """Sends a message again."""
        return await self._run(calls.redeliver_webhook_message(message_id))

    async def rotate_signing_secret(self) -> m.SigningSecret:
        """A new signing secret."""
        return await self._run(calls.rotate_signing_secret())

    def iter_webhook_messages(self, *, batch_id: str | None = None) -> AsyncIterator[m.WebhookMessage]:
        """Webhook messages with their attempts."""
        return self._iterate(calls.list_webhook_messages(batch_id=batch_id))

    def iter_webhook_endpoints(self) -> AsyncIterator[m.WebhookEndpoint]:
        """The registered endpoints."""
        return self._iterate(calls.list_webhook_endpoints())

    async def signing_secret(self) -> m.SigningSecret:
        """The webhook signing secret."""
        return await self._run(calls.get_signing_secret())

    async def call(self, call: calls.Call[T]) -> T:
        """Runs any operation of `reelbatch_client.calls` (those without a method here)."""
        return await self._run(call)

    # --- helpers --------------------------------------------------------------------------------

    async def wait(
        self,
        batch_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[m.Batch], None] | None = None,
    ) -> m.Batch:
        """Polls until the batch is finished and settled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = await self.get_batch(batch_id)
            if on_progress is not None:
                on_progress(batch)
            if batch.is_finished:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"batch {batch_id} still {batch.status} after {timeout} s")
            await self._sleep(poll_interval)

    async def download_results(
        self,
        batch_id: str,
        directory: str | Path,
        *,
        fmt: FileFormat = "csv",
        videos: bool = True,
        concurrency: int = 4,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadSummary:
        """As `Client.download_results`, fetching up to `concurrency` videos at once."""
        folder = Path(directory)
        if not (await self.get_batch(batch_id)).is_finished:
            raise ReelbatchError(f"batch {batch_id} is not finished yet: wait() for it first")
        progress = DownloadProgress()
        sheets = {}
        for which in ("results", "errors"):
            path = sheet_path(folder, which, fmt)
            if path.exists():
                progress.files_skipped.append(path.name)
            else:
                write_atomically(path, await self.results_file(batch_id, which, fmt))
            sheets[which] = path
        targets = video_targets(read_result_lines(sheets["results"], fmt), folder) if videos else []
        progress.videos_total = len(targets)
        limit = asyncio.Semaphore(concurrency)

        async def one(target: VideoTarget) -> None:
            async with limit:
                await self._download_video(batch_id, target, progress)
            if on_progress is not None:
                on_progress(progress)

        await asyncio.gather(*(one(target) for target in targets))
        return DownloadSummary(
            folder, sheets["results"], sheets["errors"], [t.path for t in targets], progress
        )

    async def _download_video(self, batch_id: str, target: VideoTarget, progress: DownloadProgress) -> None:
        if target.path.exists():
            progress.count("skipped")
            return
        target.path.parent.mkdir(parents=True, exist_ok=True)
        resumed = resume_offset(target) > 0
        link = await self.video_link(batch_id, target.task_id)
        attempt = 0
        while True:
            attempt += 1
            offset = resume_offset(target)
            request = self._http.build_request("GET", link.url, headers=range_headers(offset))
            del request.headers["X-API-Key"]  # the signed URL is the credential
            try:
                response = await self._send(request, stream=True, follow=True)
                try:
                    if response.is_error:
                        await response.aread()
                        raise error_from_response(response)
                    mode = "ab" if response.status_code == 206 else "wb"
                    with target.part.open(mode) as sink:
                        async for chunk in response.aiter_bytes():
                            sink.write(chunk)
                            progress.count(None, len(chunk))
                finally:
                    await response.aclose()
                break
            except httpx.TransportError as error:
                wait = self.retry.wait_after_error(error, attempt)
                if wait is None:
                    raise APIConnectionError(f"video {target.task_id}: {error!r}") from error
                await self._sleep(wait)
        target.part.replace(target.path)
        progress.count("resumed" if resumed else "downloaded")
