"""A fake Stripe Checkout that follows Stripe's public API for what billing uses.

- `POST /v1/checkout/sessions` (form-encoded, `Authorization: Bearer sk_...`, nested keys such as
  `line_items[0][price_data][unit_amount]`) answers a `checkout.session` object: `id` `cs_test_...`,
  `status` `open`, `payment_status` `unpaid`, `amount_total`, `currency`, `metadata`, `url`.
  Errors are Stripe's shape `{"error": {"type", "message", "param"}}` (400 invalid_request_error,
  401 for a wrong key).
- `GET /v1/checkout/sessions/{id}` retrieves a session.
- The hosted payment page (`url`): a form whose "Pay" button completes the session
  (`status` `complete`, `payment_status` `paid`, a `payment_intent`), sends the signed
  `checkout.session.completed` event to `webhook_url` (Stripe-Signature `t=...,v1=HMAC-SHA256`)
  and redirects to `success_url` with `{CHECKOUT_SESSION_ID}` filled in, as Stripe does. A
  session opened with a `customer` and `payment_intent_data[setup_future_usage]` saves the card
  (a visa ending 4242) to that customer, and every paid session has a PaymentIntent and a Charge
  that can be refunded or disputed.
- Customers, saved PaymentMethods, off-session PaymentIntents, refunds and disputes:
  `tests.fakes.stripe_payments` (routes added to the same app).

Events are signed as Stripe signs them and posted to `webhook_url` when it is set; without one they
wait in `undelivered` (payload, Stripe-Signature) for the test to deliver.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tests.fakes.server import serving
from tests.fakes.stripe_api import SECRET_KEY as SECRET_KEY
from tests.fakes.stripe_api import authorized, nested_form, stripe_error
from tests.fakes.stripe_payments import add_payment_routes, paid_intent, saved_card


@dataclass
class FakeStripe:
    """The fake's state: its sessions, the events it sent and where it sends them."""

    webhook_secret: str
    webhook_url: str = ""
    api_url: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent_events: list[dict[str, Any]] = field(default_factory=list)
    # Answers of the webhook endpoint to the events sent, in order.
    webhook_statuses: list[int] = field(default_factory=list)
    # Signed events not posted (no webhook_url): (payload, Stripe-Signature), oldest first.
    undelivered: list[tuple[bytes, str]] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Idempotency-Key -> (request parameters, status, body): Stripe answers a replay identically.
    idempotent: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    # How each saved card behaves when charged: "succeed", "decline", "authentication_required".
    card_behaviour: dict[str, str] = field(default_factory=dict)
    # How many PaymentIntents were created (not replayed): what a card was charged for.
    intents_created: int = 0

    def listening_on(self, port: int) -> None:
        self.api_url = f"http://127.0.0.1:{port}"

    def event(self, event_type: str, obj: dict[str, Any]) -> tuple[bytes, str]:
        """A signed Stripe event of `obj` (recorded in `sent_events`; see `deliver`)."""
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": json.loads(json.dumps(obj))},
        }
        self.sent_events.append(event)
        payload = json.dumps(event).encode()
        return payload, self.sign(payload)

    async def deliver(self, events: list[tuple[bytes, str]]) -> None:
        """Posts signed events to `webhook_url`, in order; keeps them in `undelivered` without one."""
        if not self.webhook_url:
            self.undelivered.extend(events)
            return
        async with httpx.AsyncClient(timeout=10) as client:
            for payload, signature in events:
                answer = await client.post(
                    self.webhook_url,
                    content=payload,
                    headers={"content-type": "application/json", "stripe-signature": signature},
                )
                self.webhook_statuses.append(answer.status_code)

    def take_undelivered(self) -> list[tuple[bytes, str]]:
        """The events waiting for delivery, oldest first (and forgets them)."""
        taken, self.undelivered[:] = list(self.undelivered), []
        return taken

    def sign(self, payload: bytes) -> str:
        """Stripe's signature scheme: `t=<unix>,v1=HMAC_SHA256(secret, "<t>.<payload>")`."""
        signed_at = int(time.time())
        digest = hmac.new(
            self.webhook_secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256
        ).hexdigest()
        return f"t={signed_at},v1={digest}"


def stripe_app(state: FakeStripe) -> FastAPI:
    """The fake's app."""
    app = FastAPI()

    @app.post("/v1/checkout/sessions")
    async def create_session(request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided", kind="invalid_request_error")
        params = nested_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if params.get("mode") != "payment":
            return stripe_error(400, "Missing required param: mode.", "mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return stripe_error(400, "Missing required param: line_items.", "line_items")
        amount = 0
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            try:
                unit = int(price["unit_amount"])
                quantity = int(item.get("quantity", "1"))
            except (KeyError, ValueError):
                return stripe_error(
                    400, "Invalid line item.", f"line_items[{index}][price_data][unit_amount]"
                )
            if price.get("currency") != "usd":
                return stripe_error(400, "Invalid currency.", f"line_items[{index}][price_data][currency]")
            amount += unit * quantity
        if not str(params.get("success_url", "")).startswith(("http://", "https://")):
            return stripe_error(400, "Not a valid URL", "success_url")
        session_id = f"cs_test_{uuid.uuid4().hex}"
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": amount,
            "amount_total": amount,
            "currency": "usd",
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "payment_intent": None,
            "customer": params.get("customer"),
            "payment_intent_data": params.get("payment_intent_data") or {},
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "created": now,
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "url": f"{state.api_url}/c/pay/{session_id}",
        }
        state.sessions[session_id] = session
        return JSONResponse(session)

    @app.get("/v1/checkout/sessions/{session_id}")
    async def retrieve_session(session_id: str, request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        session = state.sessions.get(session_id)
        if session is None:
            return stripe_error(404, f"No such checkout.session: '{session_id}'", "id")
        return JSONResponse(session)

    @app.get("/c/pay/{session_id}")
    async def payment_page(session_id: str) -> Response:
        session = state.sessions.get(session_id)
        if session is None:
            return HTMLResponse("<h1>Something went wrong</h1>", status_code=404)
        amount = f"${session['amount_total'] / 100:,.2f}"
        return HTMLResponse(
            "<!doctype html><title>Fake Stripe Checkout</title>"
            f"<h1>Pay {html.escape(amount)}</h1>"
            f'<form method="post" action="/c/pay/{session_id}">'
            '<button id="pay" type="submit">Pay</button></form>'
        )

    @app.post("/c/pay/{session_id}")
    async def pay(session_id: str) -> Response:
        session = state.sessions.get(session_id)
        if session is None or session["status"] != "open":
            return HTMLResponse("<h1>This session is no longer open</h1>", status_code=400)
        customer = session.get("customer")
        saving = (session.get("payment_intent_data") or {}).get("setup_future_usage")
        method = saved_card(state, customer) if customer and saving else None
        intent = paid_intent(state, session["amount_total"], customer, method, {})
        session.update(status="complete", payment_status="paid", payment_intent=intent["id"])
        await state.deliver([state.event("checkout.session.completed", session)])
        target = str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)
        return RedirectResponse(target, status_code=303)

    add_payment_routes(app, state)
    return app


@contextmanager
def running_fake_stripe(webhook_secret: str) -> Iterator[FakeStripe]:
    """The fake served on a free port until the block ends (set `webhook_url` once it is known)."""
    state = FakeStripe(webhook_secret=webhook_secret)
    with serving(stripe_app(state), state):
        yield state


def stack_settings(state: FakeStripe) -> dict[str, str]:
    """The settings that make a stack's billing open its Checkout Sessions at the fake."""
    return {"REELBATCH_STRIPE_SECRET_KEY": SECRET_KEY, "REELBATCH_STRIPE_API_BASE": state.api_url}


def webhook_url_of(base_url: str) -> str:
    """Where the fake delivers the paid-session events of a stack answering at `base_url`."""
    return f"{base_url}/api/payments/stripe/webhook"
