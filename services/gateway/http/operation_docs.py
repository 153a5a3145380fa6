"""What each REST operation does, by operationId: the description both OpenAPI documents give an
operation whose route sets none of its own (a test requires one on every operation, so a new
route without a description fails it until it is written here or on the route)."""

from __future__ import annotations

OPERATION_DESCRIPTIONS: dict[str, str] = {
    # Batches.
    "create_video_batch": (
        "Creates a batch of 1..REELBATCH_MAX_BATCH_ITEMS videos: every item is validated (all problems "
        "at once, each with its item index) and priced from its model and settings, the whole price is "
        "frozen, then the items run independently; each failed or cancelled item is refunded at once. "
        "Idempotent on `Idempotency-Key` / `X-Request-ID`: the same key and body answer the first batch."
    ),
    "list_video_batches": "The tenant's batches, newest first, a page at a time; filter by `status`.",
    "get_video_batch": (
        "One batch with its progress counters (succeeded, failed, cancelled, pending) and its money "
        "(frozen, spent, refunded, settlement status). Another tenant's batch is a 404."
    ),
    "list_video_batch_tasks": (
        "The batch's items in submission order, a page at a time: each with its status, settings, "
        "attempts, live retry detail while running (started, current attempt, next retry time, last "
        "error), its credits charged or refunded and, once succeeded, its video link."
    ),
    "cancel_video_batch": (
        "Stops the batch: items not started are cancelled and refunded at once, running ones are "
        "stopped at their provider; a video already made is kept and paid. Idempotent."
    ),
    "retry_failed_video_batch": (
        "A new batch (a new freeze) from the failed items of a finished batch, with the same prompts, "
        "models and settings. Idempotent per source batch: a repeat answers the same retry."
    ),
    # Money.
    "get_credits": "The tenant's available credits and the credits held by batches still running.",
    "list_ledger_entries": (
        "The tenant's ledger, newest first: every movement of its available balance (top-up, freeze, "
        "refund, settlement release) with the balance after it; filter by `batch_id`."
    ),
    "get_video_batch_billing": (
        "The batch's money: frozen, captured, refunded, released and net spent, and every ledger "
        "transfer of the batch in order (freeze, each item's capture or refund, the settlement), a "
        "page at a time. An item's capture or refund carries the `ledger_transfer_id` its task "
        "webhook, task view and results line carry. Another tenant's batch is a 404."
    ),
    "export_own_ledger": "The tenant's ledger as CSV, streamed, for a time range (finance's export).",
    "list_packs": "The prepaid credit packs on sale, cheapest first, with their bonus over list price.",
    "get_statement": (
        "A month of the available balance: opening, purchases, grants, spent, refunded, released and "
        "closing, with per-model usage; JSON, or CSV with `format=csv`."
    ),
    # API keys.
    "list_own_keys": "The tenant's API keys (never their secrets), newest first.",
    "revoke_own_key": "Revokes one of the tenant's API keys; requests with it are refused from then on.",
    # Videos.
    "get_video_link": (
        "Answers the caller's API key with a redirect to a fresh short-lived signed URL of the task's "
        "video: the long-lived link webhooks and exports carry."
    ),
    "get_video": (
        "Streams a video by its signed URL (the signature and expiry are the credentials; no API key). "
        "Range requests are supported; with S3 storage this redirects to a presigned URL."
    ),
    # Webhooks.
    "create_webhook_endpoint": (
        "Registers an account-level endpoint for batch events (and, opted in, task events); its signing "
        "secret is shown once. The URL must pass the SSRF rules; the same URL twice is a 409."
    ),
    "list_webhook_endpoints": "The tenant's live webhook endpoints, newest first.",
    "delete_webhook_endpoint": "Deletes an endpoint; its pending messages are not sent.",
    "rotate_webhook_endpoint_secret": (
        "A new signing secret for the endpoint (shown once); the old one keeps signing alongside it "
        "during the overlap, so receivers can switch without losing a delivery."
    ),
    "list_webhook_messages": (
        "The tenant's webhook messages, newest first, each with its delivery attempts (status, response "
        "code, duration); filter by `batch_id`."
    ),
    "redeliver_webhook_message": "Sends a message again, with the same `webhook-id` (receivers deduplicate).",
    "get_webhook_signing_secret": "The secret that signs deliveries to batches' own `webhook_url`s.",
    "rotate_webhook_signing_secret": (
        "A new secret for batches' `webhook_url`s; the old one keeps signing alongside it during the overlap."
    ),
    # Operator API.
    "healthz": "Liveness: the gateway process answers (no backend is asked).",
    "readyz": "Readiness: every backend service answers its health check; 503 with the ones that do not.",
    "create_tenant": "Creates a tenant (a customer account) with an empty wallet.",
    "create_invite": (
        "Invites a tenant's console user (owner, developer or finance): answers a single-use invite "
        "URL that expires; opening it sets the user's password and signs them in."
    ),
    "list_tenants": "Every tenant with its balances, a page at a time.",
    "create_api_key": "Creates an API key for a tenant; the key is shown once.",
    "list_tenant_keys": "A tenant's API keys (never their secrets).",
    "revoke_any_key": "Revokes any tenant's API key.",
    "create_admin_key": "Creates a named operator key (an alternative to the admin token); shown once.",
    "list_admin_keys": "The operator keys (never their secrets).",
    "revoke_admin_key": "Revokes an operator key.",
    "top_up": "Grants credits to a tenant; idempotent on `reference` (the same reference credits once).",
    "get_tenant_credits": "A tenant's available and held credits.",
    "list_tenant_ledger": "A tenant's ledger entries, newest first, a page at a time.",
    "record_payment": (
        "Records an offline payment (an invoice): a pack or custom credits, credited once per reference."
    ),
    "list_batches": "Every tenant's batches, newest first, filtered by status, settlement and creation time.",
    "get_batch": "Any batch with its counters and money (operator view).",
    "list_batch_tasks": "Any batch's tasks in submission order, a page at a time (operator view).",
    "get_batch_billing": "A batch's ledger entries and totals: frozen, refunded and net spent.",
    "list_batch_webhooks": "The webhook messages of a batch with their delivery attempts.",
    "provider_routes": (
        "For each model, every provider route in its failover order with the share of videos, tasks, "
        "jobs and failed jobs it took and what its jobs cost us."
    ),
    "reconcile": (
        "Checks the money invariants (I1-I3) over every batch and the ledger; answers the discrepancies "
        "found (none when the books balance)."
    ),
    "export_ledger": "Every tenant's ledger as CSV, streamed, for a time range.",
    "monthly_margins": "Revenue against provider cost per model for a month.",
    "list_video_access": "Who fetched which video when (the video link audit log).",
    "stripe_webhook": (
        "Stripe Checkout's webhook: a verified `checkout.session.completed` credits its pack once; "
        "authenticated by the Stripe signature alone."
    ),
}
