"""The fake Stripe's Customers, saved PaymentMethods, PaymentIntents, refunds and disputes, following
Stripe's public API for what billing uses (ADR-134, ADR-135).

- `POST /v1/customers`, `GET /v1/customers/{id}`, `GET /v1/customers/{id}/payment_methods?type=card`
  (newest first), `POST /v1/payment_methods/{pm}/attach` with Stripe's test tokens: `pm_card_visa`
  (charges succeed), `pm_card_chargeCustomerFail` (attaches, every charge is declined:
  `card_declined`/`generic_decline`), `pm_card_authenticationRequired` (off-session charges fail with
  `authentication_required`). Attaching a token makes a new `pm_...` on the customer, as Stripe does.
- `POST /v1/payment_intents` with `confirm=true`, `off_session=true`: `succeeded` with a Charge, or
  HTTP 402 `card_error` carrying the PaymentIntent (`requires_payment_method`, `last_payment_error`).
  An `Idempotency-Key` replays the first answer (`Idempotent-Replayed: true`); the same key with
  other parameters is a 400 `idempotency_error`. Events: `payment_intent.succeeded` and
  `charge.succeeded`, or `payment_intent.payment_failed` (and `charge.failed` for a decline).
- `POST /v1/refunds` (`payment_intent` or `charge`, optional `amount`): a Refund; the Charge's
  cumulative `amount_refunded` grows; events `charge.refunded` (the Charge) and `refund.created`.
- Disputes are opened by the card network, so only in test mode: `POST /v1/test_helpers/disputes`
  (`payment_intent`, optional `amount`) stands for a test card that disputes, sending
  `charge.dispute.created` and `charge.dispute.funds_withdrawn`. `POST /v1/disputes/{id}` with
  `evidence[uncategorized_text]=winning_evidence` (or `losing_evidence`) closes it won (lost) as
  Stripe's test evidence does: `charge.dispute.closed` (+ `charge.dispute.funds_reinstated` when
  won); `POST /v1/disputes/{id}/close` accepts it (lost).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.stripe_api import authorized, nested_form, stripe_error

if TYPE_CHECKING:
    from tests.fakes.stripe_checkout import FakeStripe

TEST_CARDS = {
    "pm_card_visa": ("visa", "4242", "succeed"),
    "pm_card_chargeCustomerFail": ("visa", "0341", "decline"),
    "pm_card_authenticationRequired": ("visa", "3184", "authentication_required"),
}


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _list(url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": False, "data": data}


def saved_card(state: FakeStripe, customer: str, token: str = "pm_card_visa") -> dict[str, Any]:
    """Saves a card (a test token's behaviour) to `customer`; the new PaymentMethod."""
    brand, last4, behaviour = TEST_CARDS[token]
    method_id = _id("pm")
    method: dict[str, Any] = {
        "id": method_id,
        "object": "payment_method",
        "type": "card",
        "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034, "funding": "credit"},
        "customer": customer,
        "created": int(time.time()),
        "livemode": False,
        "metadata": {},
    }
    state.payment_methods[method_id] = method
    state.card_behaviour[method_id] = behaviour
    return method


def paid_intent(
    state: FakeStripe,
    amount: int,
    customer: str | None,
    method: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A succeeded PaymentIntent with its Charge (a paid Checkout Session's, or an off-session one's)."""
    intent_id, charge_id = _id("pi"), _id("ch")
    now = int(time.time())
    state.charges[charge_id] = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "refunded": False,
        "captured": True,
        "paid": True,
        "status": "succeeded",
        "disputed": False,
        "currency": "usd",
        "customer": customer,
        "payment_intent": intent_id,
        "payment_method": method["id"] if method else None,
        "metadata": metadata,
        "created": now,
        "livemode": False,
    }
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": "usd",
        "customer": customer,
        "payment_method": method["id"] if method else None,
        "status": "succeeded",
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "latest_charge": charge_id,
        "last_payment_error": None,
        "metadata": metadata,
        "created": now,
        "livemode": False,
    }
    state.intents[intent_id] = intent
    return intent


def _idempotent(state: FakeStripe, request: Request, params: dict[str, Any]) -> tuple[str, Response | None]:
    """The request's Idempotency-Key and, for a replay, Stripe's answer to it."""
    key = request.headers.get("idempotency-key", "")
    stored = state.idempotent.get(key) if key else None
    if stored is None:
        return key, None
    first_params, status, body = stored
    if first_params != params:
        return key, stripe_error(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were first used"
            f" with. Try using a key other than '{key}' if you meant to execute a different request.",
            kind="idempotency_error",
        )
    return key, JSONResponse(body, status_code=status, headers={"idempotent-replayed": "true"})


def _remember(
    state: FakeStripe, key: str, params: dict[str, Any], status: int, body: dict[str, Any]
) -> Response:
    if key:
        state.idempotent[key] = (params, status, body)
    return JSONResponse(body, status_code=status)


def _send(state: FakeStripe, background: BackgroundTasks, events: list[tuple[bytes, str]]) -> None:
    """Events go out after the answer, as Stripe sends them; kept at once without a webhook URL."""
    if state.webhook_url:
        background.add_task(state.deliver, events)
    else:
        state.undelivered.extend(events)


async def _form(request: Request) -> dict[str, Any]:
    return nested_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def add_payment_routes(app: FastAPI, state: FakeStripe) -> None:
    """Adds the Customers, PaymentMethods, PaymentIntents, refunds and disputes routes to `app`."""

    @app.post("/v1/customers")
    async def create_customer(request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        params = await _form(request)
        key, replay = _idempotent(state, request, params)
        if replay is not None:
            return replay
        customer_id = _id("cus")
        customer: dict[str, Any] = {
            "id": customer_id,
            "object": "customer",
            "description": params.get("description"),
            "email": params.get("email"),
            "metadata": params.get("metadata") or {},
            "invoice_settings": {"default_payment_method": None},
            "created": int(time.time()),
            "livemode": False,
        }
        state.customers[customer_id] = customer
        return _remember(state, key, params, 200, customer)

    @app.get("/v1/customers/{customer_id}")
    async def retrieve_customer(customer_id: str, request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        if customer_id not in state.customers:
            return stripe_error(404, f"No such customer: '{customer_id}'", "id")
        return JSONResponse(state.customers[customer_id])

    @app.get("/v1/customers/{customer_id}/payment_methods")
    async def list_payment_methods(customer_id: str, request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        if customer_id not in state.customers:
            return stripe_error(404, f"No such customer: '{customer_id}'", "customer")
        kind = request.query_params.get("type")
        limit = int(request.query_params.get("limit", "10"))
        # Newest first (insertion order: `created` has a resolution of one second).
        found = [
            method
            for method in reversed(state.payment_methods.values())
            if method["customer"] == customer_id and kind in (None, method["type"])
        ]
        return JSONResponse(_list(f"/v1/customers/{customer_id}/payment_methods", found[:limit]))

    @app.post("/v1/payment_methods/{token}/attach")
    async def attach(token: str, request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        customer = (await _form(request)).get("customer")
        if customer not in state.customers:
            return stripe_error(404, f"No such customer: '{customer}'", "customer")
        if token not in TEST_CARDS:
            return stripe_error(404, f"No such PaymentMethod: '{token}'", "payment_method")
        return JSONResponse(saved_card(state, str(customer), token))

    @app.post("/v1/payment_intents")
    async def create_intent(request: Request, background: BackgroundTasks) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        params = await _form(request)
        key, replay = _idempotent(state, request, params)
        if replay is not None:
            return replay
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError):
            return stripe_error(400, "Missing required param: amount.", "amount")
        if params.get("currency") != "usd":
            return stripe_error(400, "Invalid currency.", "currency")
        method = state.payment_methods.get(str(params.get("payment_method")))
        customer = params.get("customer")
        if params.get("confirm") != "true" or params.get("off_session") != "true":
            return stripe_error(400, "This fake confirms off-session PaymentIntents only.", "confirm")
        if method is None or method["customer"] != customer:
            return stripe_error(
                400, "The provided PaymentMethod does not belong to this customer.", "payment_method"
            )
        metadata = params.get("metadata") or {}
        state.intents_created += 1
        intent = paid_intent(state, amount, str(customer), method, metadata)
        behaviour = state.card_behaviour[method["id"]]
        if behaviour == "succeed":
            charge = state.charges[intent["latest_charge"]]
            _send(
                state,
                background,
                [state.event("payment_intent.succeeded", intent), state.event("charge.succeeded", charge)],
            )
            return _remember(state, key, params, 200, intent)
        declined = behaviour == "decline"
        error = {
            "type": "card_error",
            "code": "card_declined" if declined else "authentication_required",
            "decline_code": "generic_decline" if declined else "authentication_required",
            "message": (
                "Your card was declined."
                if declined
                else "Your card was declined. This transaction requires authentication."
            ),
            "payment_method": method,
        }
        charge = state.charges.pop(intent["latest_charge"])
        events = [state.event("payment_intent.payment_failed", intent)]
        if declined:
            charge.update(status="failed", paid=False, captured=False, amount_captured=0)
            state.charges[charge["id"]] = charge
            error["charge"] = charge["id"]
            events.append(state.event("charge.failed", charge))
        intent.update(
            status="requires_payment_method",
            amount_received=0,
            latest_charge=charge["id"] if declined else None,
            last_payment_error={k: v for k, v in error.items() if k != "payment_method"},
        )
        events[0] = state.event("payment_intent.payment_failed", intent)
        error["payment_intent"] = intent
        _send(state, background, events)
        return _remember(state, key, params, 402, {"error": error})

    @app.get("/v1/payment_intents/{intent_id}")
    async def retrieve_intent(intent_id: str, request: Request) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        if intent_id not in state.intents:
            return stripe_error(404, f"No such payment_intent: '{intent_id}'", "id")
        return JSONResponse(state.intents[intent_id])

    @app.post("/v1/refunds")
    async def create_refund(request: Request, background: BackgroundTasks) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        params = await _form(request)
        key, replay = _idempotent(state, request, params)
        if replay is not None:
            return replay
        charge = _charge_of(state, params)
        if charge is None:
            return stripe_error(400, "Provide a payment_intent or charge that was paid.", "payment_intent")
        left = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount", left))
        if not 0 < amount <= left:
            return stripe_error(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                "amount",
            )
        refund = {
            "id": _id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": "usd",
            "status": "succeeded",
            "reason": params.get("reason"),
            "created": int(time.time()),
        }
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        _send(
            state,
            background,
            [state.event("charge.refunded", charge), state.event("refund.created", refund)],
        )
        return _remember(state, key, params, 200, refund)

    @app.post("/v1/test_helpers/disputes")
    async def open_dispute(request: Request, background: BackgroundTasks) -> Response:
        params = await _form(request)
        charge = _charge_of(state, params)
        if charge is None:
            return stripe_error(400, "No paid charge for this payment_intent.", "payment_intent")
        dispute = {
            "id": _id("dp"),
            "object": "dispute",
            "amount": int(params.get("amount", charge["amount"])),
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": "usd",
            "reason": "fraudulent",
            "status": "needs_response",
            "is_charge_refundable": False,
            "evidence": {},
            "balance_transactions": [],
            "created": int(time.time()),
            "livemode": False,
        }
        charge["disputed"] = True
        state.disputes[dispute["id"]] = dispute
        _send(
            state,
            background,
            [
                state.event("charge.dispute.created", dispute),
                state.event("charge.dispute.funds_withdrawn", dispute),
            ],
        )
        return JSONResponse(dispute)

    @app.post("/v1/disputes/{dispute_id}")
    async def update_dispute(dispute_id: str, request: Request, background: BackgroundTasks) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        dispute = state.disputes.get(dispute_id)
        if dispute is None:
            return stripe_error(404, f"No such dispute: '{dispute_id}'", "id")
        evidence = (await _form(request)).get("evidence") or {}
        text = evidence.get("uncategorized_text", "")
        if text not in ("winning_evidence", "losing_evidence"):
            dispute["evidence"] = evidence
            _send(state, background, [state.event("charge.dispute.updated", dispute)])
            return JSONResponse(dispute)
        return _close(state, background, dispute, "won" if text == "winning_evidence" else "lost")

    @app.post("/v1/disputes/{dispute_id}/close")
    async def close_dispute(dispute_id: str, request: Request, background: BackgroundTasks) -> Response:
        if not authorized(request):
            return stripe_error(401, "Invalid API Key provided")
        dispute = state.disputes.get(dispute_id)
        if dispute is None:
            return stripe_error(404, f"No such dispute: '{dispute_id}'", "id")
        return _close(state, background, dispute, "lost")


def _charge_of(state: FakeStripe, params: dict[str, Any]) -> dict[str, Any] | None:
    charge_id = params.get("charge")
    if not charge_id and params.get("payment_intent") in state.intents:
        charge_id = state.intents[params["payment_intent"]].get("latest_charge")
    charge = state.charges.get(str(charge_id)) if charge_id else None
    return charge if charge is not None and charge["paid"] else None


def _close(state: FakeStripe, background: BackgroundTasks, dispute: dict[str, Any], status: str) -> Response:
    if dispute["status"] in ("won", "lost"):
        return stripe_error(400, f"This dispute is already closed ({dispute['status']}).", "id")
    dispute["status"] = status
    events = [state.event("charge.dispute.closed", dispute)]
    if status == "won":
        events.append(state.event("charge.dispute.funds_reinstated", dispute))
    _send(state, background, events)
    return JSONResponse(dispute)
