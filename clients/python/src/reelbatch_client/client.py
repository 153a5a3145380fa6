"""The synchronous client: every customer endpoint, iterators over the lists, and the batch helpers.

    from reelbatch_client import Client
    with Client() as client:                      # REELBATCH_API_KEY, REELBATCH_BASE_URL
        accepted = client.submit_file("prompts.csv", model="veo-3")
        batch = client.wait(accepted.batch_id, on_progress=print)
        client.download_results(batch.batch_id, "out/")

Requests are retried on network errors, 429 and 503 (honouring Retry-After); creates carry an
Idempotency-Key that stays the same across those retries. A non-2xx answer raises the typed error
of its code (`reelbatch_client.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import httpx

from reelbatch_client import calls
from reelbatch_client import models as m
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
BatchItems = Sequence[m.BatchItem | Mapping[str, Any]]


class Client:
    """A Reelbatch customer API client (thread-safe like the `httpx.Client` under it)."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = ClientSettings.resolve(api_key, base_url)
        self.base_url = settings.base_url
        self.retry = retry or RetryPolicy()
        self.rate_limit = RateLimit()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=settings.base_url,
            headers=settings.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, stream: bool = False, follow: bool = False) -> httpx.Response:
        """Sends with the retry policy; answers the final response (any status)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.send(request, stream=stream, follow_redirects=follow)
            except httpx.TransportError as error:
                wait = self.retry.wait_after_error(error, attempt)
                if wait is None:
                    raise APIConnectionError(f"{request.method} {request.url}: {error!r}") from error
                self._sleep(wait)
                continue
            self.rate_limit = RateLimit.of(response)
            wait = self.retry.wait_after_response(response, attempt)
            if wait is None:
                if pause := self.rate_limit.pause():
                    self._sleep(pause)  # pace the next request instead of earning a 429
                return response
            response.close()
            self._sleep(wait)

    def _run(self, call: calls.Call[T]) -> T:
        request = self._http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            content=call.content,
            files=call.files,
            headers=dict(call.headers),
        )
        response = self._send(request)
        if response.is_error:
            raise error_from_response(response)
        return call.parse(response)

    def _iterate(self, page_call: calls.PageCall[T]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = self._run(page_call(cursor))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # --- batches --------------------------------------------------------------------------------

    def create_batch(
        self,
        items: BatchItems,
        *,
        webhook_url: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        deadline_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.BatchAccepted:
        """Submits items (models or dicts); the price is frozen before anything runs."""
        request = calls.create_request(
            items, webhook_url=webhook_url, name=name, metadata=metadata, deadline_seconds=deadline_seconds
        )
        return self._run(calls.create_batch(request, idempotency_key))

    def submit_file(
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
        """Submits a CSV or JSONL file of prompts (`model` for rows without one); see `inputs`."""
        items = read_items(path, default_model=model)
        call = calls.create_batch_jsonl(
            to_jsonl(items),
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            deadline_seconds=deadline_seconds,
            name=name if name is not None else Path(path).name,
            metadata=metadata,
        )
        return self._run(call)

    def get_batch(self, batch_id: str) -> m.Batch:
        """One batch with its counts and money."""
        return self._run(calls.get_batch(batch_id))

    def iter_batches(
        self, *, status: str | None = None, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Iterator[m.Batch]:
        """Every batch of the tenant, newest first (filters optional)."""
        return self._iterate(calls.list_batches(status=status, name=name, metadata=metadata))

    def iter_tasks(self, batch_id: str, *, status: str | None = None) -> Iterator[m.Task]:
        """Every item of a batch, in batch order."""
        return self._iterate(calls.list_tasks(batch_id, status=status))

    def cancel(self, batch_id: str) -> m.Batch:
        """Cancels the items not started yet (refunded at once)."""
        return self._run(calls.cancel_batch(batch_id))

    def retry_failed(
        self,
        batch_id: str,
        *,
        failure_types: list[m.FailureType] | None = None,
        idempotency_key: str | None = None,
    ) -> m.BatchAccepted:
        """A new batch of a finished batch's failed items (idempotent per source batch)."""
        return self._run(calls.retry_failed(batch_id, failure_types, idempotency_key))

    def results(self, batch_id: str) -> list[m.ResultLine]:
        """The succeeded items' result lines."""
        return parse_lines(self.results_file(batch_id, "results"))

    def errors(self, batch_id: str) -> list[m.ResultLine]:
        """The failed and cancelled items' lines."""
        return parse_lines(self.results_file(batch_id, "errors"))

    def results_file(self, batch_id: str, which: str = "results", fmt: FileFormat = "jsonl") -> bytes:
        """The results (or errors) file as the API sends it, JSONL or CSV."""
        return self._run(calls.batch_file(batch_id, which, fmt))

    def videos_zip(self, batch_id: str) -> bytes:
        """Every video of the batch in one zip."""
        return self._run(calls.videos_zip(batch_id))

    def video_link(self, batch_id: str, task_id: str, mode: str = "download") -> m.VideoLink:
        """A short-lived signed URL of one video."""
        return self._run(calls.video_link(batch_id, task_id, mode))

    # --- money, models, files -------------------------------------------------------------------

    def credits(self) -> m.Credits:
        """The balance: available and held."""
        return self._run(calls.get_credits())

    def iter_ledger(self, *, batch_id: str | None = None) -> Iterator[m.LedgerEntry]:
        """Every movement of the available balance, newest first."""
        return self._iterate(calls.list_ledger(batch_id=batch_id))

    def batch_billing(self, batch_id: str, cursor: str | None = None) -> m.BatchBilling:
        """A batch's money: its totals and a page of its transfers; each item's capture or refund
        carries the `ledger_transfer_id` of its task webhook and results line."""
        return self._run(calls.batch_billing(batch_id, cursor))

    def ledger_csv(self, created_from: str | None = None, created_to: str | None = None) -> bytes:
        """The ledger as CSV (RFC 3339 bounds)."""
        return self._run(calls.ledger_csv(created_from, created_to))

    def statement(self, month: str | None = None) -> m.Statement:
        """A calendar month's statement (`YYYY-MM`, UTC)."""
        return self._run(calls.statement(month))

    def models(self) -> list[m.VideoModel]:
        """Every model with its settings and prices."""
        return self._run(calls.list_models()).items

    def packs(self) -> m.PackCatalog:
        """The credit packs on sale."""
        return self._run(calls.list_packs())

    def upload_file(self, path: str | Path, content_type: str = "image/png") -> m.InputFile:
        """Uploads an input image; use its `file_id` in `ImageInput`."""
        source = Path(path)
        return self._run(calls.upload_file(source.name, source.read_bytes(), content_type))

    def api_keys(self) -> list[m.ApiKey]:
        """The tenant's API keys."""
        return self._run(calls.list_api_keys()).items

    def revoke_api_key(self, key_id: str) -> m.ApiKey:
        """Revokes a key of the tenant."""
        return self._run(calls.revoke_api_key(key_id))

    def budget(self, *, key_id: str | None = None, project: str | None = None) -> m.Budget:
        """A monthly budget and its use (the tenant's, or one key's, or one project's)."""
        return self._run(calls.get_budget(key_id=key_id, project=project))

    def set_budget(
        self, monthly_credits: int | None, *, key_id: str | None = None, project: str | None = None
    ) -> m.Budget:
        """Sets (None: removes) a monthly budget; needs a key with the `billing` scope."""
        return self._run(calls.set_budget(monthly_credits, key_id=key_id, project=project))

    def budgets(self) -> list[m.Budget]:
        """Every budget of the tenant with its use this month."""
        return self._run(calls.list_budgets()).items

    def alert_thresholds(self) -> m.AlertThresholds:
        """The tenant's spend alert thresholds (`credits.low`, `budget.threshold` webhooks)."""
        return self._run(calls.get_alert_thresholds())

    def set_alert_thresholds(
        self, *, low_balance_credits: int | None = None, budget_percent: int | None = None
    ) -> m.AlertThresholds:
        """Replaces the spend alert thresholds (None: that alert off); needs the `billing` scope."""
        return self._run(
            calls.set_alert_thresholds(low_balance_credits=low_balance_credits, budget_percent=budget_percent)
        )

    def auto_top_up(self) -> m.AutoTopUp:
        """The tenant's automatic top-up settings and latest purchases."""
        return self._run(calls.get_auto_top_up())

    def set_auto_top_up(
        self, *, enabled: bool, threshold_credits: int, pack_id: str, max_per_month: int = 1
    ) -> m.AutoTopUp:
        """Turns automatic top-up on (needs a card saved with Stripe) or off; needs the `billing` scope."""
        return self._run(
            calls.set_auto_top_up(
                enabled=enabled,
                threshold_credits=threshold_credits,
                pack_id=pack_id,
                max_per_month=max_per_month,
            )
        )

    def quote(self, request: m.CreateBatchRequest) -> m.Quote:
        """Prices a batch without freezing; create it with `quote_id` to be charged exactly that."""
        return self._run(calls.create_quote(request))

    # --- webhooks -------------------------------------------------------------------------------

    def create_webhook_endpoint(
        self, url: str, event_types: list[str] | None = None, description: str = ""
    ) -> m.WebhookEndpointCreated:
        """Registers an endpoint; its `secret` is shown once."""
        endpoint = m.EndpointIn(url=url, event_types=event_types or [], description=description)
        return self._run(calls.create_webhook_endpoint(endpoint))

    def iter_webhook_endpoints(self) -> Iterator[m.WebhookEndpoint]:
        """The registered endpoints."""
        return self._iterate(calls.list_webhook_endpoints())

    def delete_webhook_endpoint(self, endpoint_id: str) -> m.WebhookEndpoint:
        """Removes an endpoint."""
        return self._run(calls.delete_webhook_endpoint(endpoint_id))

    def rotate_webhook_endpoint_secret(self, endpoint_id: str) -> m.WebhookEndpointSecretRotated:
        """A new secret for an endpoint."""
        return self._run(calls.rotate_webhook_endpoint_secret(endpoint_id))

    def iter_webhook_messages(self, *, batch_id: str | None = None) -> Iterator[m.WebhookMessage]:
        """Webhook messages with their attempts, newest first."""
        return self._iterate(calls.list_webhook_messages(batch_id=batch_id))

    def redeliver_webhook_message(self, message_id: str) -> m.WebhookMessage:
        """Sends a message again."""
        return self._run(calls.redeliver_webhook_message(message_id))

    def signing_secret(self) -> m.SigningSecret:
        """The secret signing the webhooks sent to batches' `webhook_url`."""
        return self._run(calls.get_signing_secret())

    def rotate_signing_secret(self) -> m.SigningSecret:
        """A new signing secret."""
        return self._run(calls.rotate_signing_secret())

    def call(self, call: calls.Call[T]) -> T:
        """Runs any operation of `reelbatch_client.calls` as it is (with retries and typed errors)."""
        return self._run(call)

    # --- helpers over several calls -------------------------------------------------------------

    def wait(
        self,
        batch_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[m.Batch], None] | None = None,
    ) -> m.Batch:
        """Polls until the batch is finished and settled; `on_progress` sees every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.get_batch(batch_id)
            if on_progress is not None:
                on_progress(batch)
            if batch.is_finished:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"batch {batch_id} still {batch.status} after {timeout} s")
            self._sleep(poll_interval)

    def download_results(
        self,
        batch_id: str,
        directory: str | Path,
        *,
        fmt: FileFormat = "csv",
        videos: bool = True,
        concurrency: int = 4,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadSummary:
        """Results and errors files plus every video (`concurrency` at once) into `directory`;
        resumable after a crash (complete files are skipped, partial ones continue where they stopped)."""
        folder = Path(directory)
        if not self.get_batch(batch_id).is_finished:
            raise ReelbatchError(f"batch {batch_id} is not finished yet: wait() for it first")
        progress = DownloadProgress()
        sheets = {}
        for which in ("results", "errors"):
            path = sheet_path(folder, which, fmt)
            if path.exists():
                progress.files_skipped.append(path.name)
            else:
                write_atomically(path, self.results_file(batch_id, which, fmt))
            sheets[which] = path
        targets = video_targets(read_result_lines(sheets["results"], fmt), folder) if videos else []
        progress.videos_total = len(targets)
        if concurrency <= 1:
            for target in targets:
                self._download_video(batch_id, target, progress)
                if on_progress is not None:
                    on_progress(progress)
            return DownloadSummary(
                folder, sheets["results"], sheets["errors"], [t.path for t in targets], progress
            )
        # A few videos at once: each costs a link request and a file request of ~30 ms server time.
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="reelbatch-download")
        try:
            for done in as_completed(
                [pool.submit(self._download_video, batch_id, t, progress) for t in targets]
            ):
                done.result()
                if on_progress is not None:
                    on_progress(progress)
        finally:
            # On an error (or Ctrl-C) the queued videos are dropped; a new run resumes them.
            pool.shutdown(wait=True, cancel_futures=True)
        return DownloadSummary(
            folder, sheets["results"], sheets["errors"], [t.path for t in targets], progress
        )

    def _download_video(self, batch_id: str, target: VideoTarget, progress: DownloadProgress) -> None:
        if target.path.exists():
            progress.count("skipped")
            return
        target.path.parent.mkdir(parents=True, exist_ok=True)
        resumed = resume_offset(target) > 0
        link = self.video_link(batch_id, target.task_id)
        attempt = 0
        while True:
            attempt += 1
            offset = resume_offset(target)
            request = self._http.build_request("GET", link.url, headers=range_headers(offset))
            # The signed URL is the credential; the API key never travels to the file's host.
            del request.headers["X-API-Key"]
            try:
                self._stream_to(request, target, progress)
                break
            except httpx.TransportError as error:
                wait = self.retry.wait_after_error(error, attempt)
                if wait is None:
                    raise APIConnectionError(f"video {target.task_id}: {error!r}") from error
                self._sleep(wait)
        target.part.replace(target.path)
        progress.count("resumed" if resumed else "downloaded")

    def _stream_to(self, request: httpx.Request, target: VideoTarget, progress: DownloadProgress) -> None:
        """Appends the answer's bytes to the `.part` file, counting them as they arrive."""
        # Follows a 307 of S3 storage to its presigned URL.
        response = self._send(request, stream=True, follow=True)
        try:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            # 206: the rest of the file; 200: the server ignored the Range, start over.
            mode = "ab" if response.status_code == 206 else "wb"
            with target.part.open(mode) as sink:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    progress.count(None, len(chunk))
        finally:
            response.close()
