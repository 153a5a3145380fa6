"""Console endpoints of credits: packs and prices, buying a pack through Stripe Checkout (a session
the server opens; the paid-session webhook credits the pack), payments received and a receipt per
payment, and the owner's choice whether finance members may buy.
"""

from typing import Literal

import grpc
from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from libs.rpc.errors import remote_error
from services.gateway.console import pages
from services.gateway.console.audit import record_activity
from services.gateway.console.auth import ConsoleUser, CurrentUser, Refused, form_fields
from services.gateway.console.route_table import FINANCE, OWNER
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.http.params import CursorText, FilterText
from services.gateway.schemas.auto_top_up import MAX_PER_MONTH, MAX_THRESHOLD_CREDITS, AutoTopUpUpdate
from services.gateway.schemas.spend_control import MAX_LOW_BALANCE_CREDITS, MAX_MONTHLY_CREDITS
from services.gateway.use_cases.console_money import ConsoleMoney
from services.gateway.use_cases.console_reads import NotTheTenants

CREDITS_PATH = "/console/credits"
CHECKOUT_RETRY_SECONDS = 30
CHECKOUT_NOTICES = {
    "done": "Thank you: your payment is being confirmed. The credits appear below once Stripe confirms it.",
    "cancelled": "The checkout was cancelled; nothing was charged.",
}


def may_buy(user: ConsoleUser, finance_may_buy: bool) -> bool:
    """Owners may buy credits; finance members only when the owner allows it."""
    return user.role == OWNER or (user.role == FINANCE and finance_may_buy)


def credits_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """credits, buy_credits, receipt, credit_settings, set_budget, set_alerts, set_auto_top_up."""
    money = ConsoleMoney(deps.backends, deps.settings.grpc_deadline_seconds)
    base_url = deps.settings.public_base_url.rstrip("/")

    async def credits(
        request: Request, user: CurrentUser, checkout: FilterText = "", cursor: CursorText = ""
    ) -> Response:
        finance_may_buy = await money.finance_may_buy(user.tenant_id)
        budgets = await money.budgets(user.tenant_id)
        alerts = await money.alerts(user.tenant_id)
        auto_top_up = await money.auto_top_up(user.tenant_id)
        debt = await money.debt(user.tenant_id)
        packs = await money.packs()
        receipts, next_cursor = await money.receipts(user.tenant_id, cursor)
        return pages.render(
            request,
            "credits/index.html",
            user=user,
            active="credits",
            packs=packs,
            receipts=receipts,
            next_cursor=next_cursor,
            can_buy=may_buy(user, finance_may_buy),
            finance_may_buy=finance_may_buy,
            is_owner=user.role == OWNER,
            notice=CHECKOUT_NOTICES.get(checkout, ""),
            budgets=budgets,
            alerts=alerts,
            auto_top_up=auto_top_up,
            debt=debt,
        )

    async def buy_credits(request: Request, user: CurrentUser) -> Response:
        if not may_buy(user, await money.finance_may_buy(user.tenant_id)):
            raise Refused(403, "Your account's owner has not allowed finance members to buy credits.")
        pack_id = (await form_fields(request)).get("pack_id", "")
        try:
            url = await money.open_checkout(
                user.tenant_id,
                pack_id,
                success_url=f"{base_url}{CREDITS_PATH}?checkout=done",
                cancel_url=f"{base_url}{CREDITS_PATH}?checkout=cancelled",
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return pages.message(request, user, 422, "Cannot buy", "There is no such pack.")
            if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
                # Online payments not configured, or Stripe did not answer: nothing was charged.
                return pages.message(
                    request,
                    user,
                    503,
                    "Payments unavailable",
                    "Buying credits online is not available right now; nothing was charged.",
                    **{"Retry-After": str(CHECKOUT_RETRY_SECONDS)},
                )
            raise
        await record_activity(deps, request, user, "credits.checkout_opened", "pack", pack_id)
        return RedirectResponse(url, status_code=303)

    async def receipt(request: Request, user: CurrentUser, payment_id: str) -> Response:
        if not payment_id.isdigit():
            raise NotTheTenants(payment_id)
        try:
            found = await money.receipt(user.tenant_id, payment_id)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotTheTenants(payment_id) from None
            raise
        return pages.render(request, "credits/receipt.html", user=user, active="credits", receipt=found)

    async def credit_settings(request: Request, user: CurrentUser) -> Response:
        allowed = (await form_fields(request)).get("finance_may_buy_credits") == "on"
        stored = await money.set_finance_may_buy(user.tenant_id, allowed)
        await record_activity(
            deps,
            request,
            user,
            "console.settings_changed",
            "tenant",
            user.tenant_id,
            f"finance may buy credits: {'yes' if stored else 'no'}",
        )
        return RedirectResponse(CREDITS_PATH, status_code=303)

    async def set_budget(request: Request, user: CurrentUser) -> Response:
        typed = _whole((await form_fields(request)).get("monthly_credits", ""), 0, MAX_MONTHLY_CREDITS)
        if typed is False:
            return pages.message(
                request,
                user,
                422,
                "Budget not saved",
                f"A monthly budget is a whole number of credits from 0 to {MAX_MONTHLY_CREDITS:,}, "
                "or empty for none.",
            )
        stored = await money.set_tenant_budget(user.tenant_id, typed)
        shown = "none" if stored.monthly_credits is None else f"{stored.monthly_credits} credits a month"
        await record_activity(
            deps, request, user, "budget.changed", "tenant", user.tenant_id, f"monthly budget: {shown}"
        )
        return RedirectResponse(CREDITS_PATH, status_code=303)

    async def set_alerts(request: Request, user: CurrentUser) -> Response:
        fields = await form_fields(request)
        low = _whole(fields.get("low_balance_credits", ""), 1, MAX_LOW_BALANCE_CREDITS)
        percent = _whole(fields.get("budget_percent", ""), 1, 100)
        if low is False or percent is False:
            return pages.message(
                request,
                user,
                422,
                "Alerts not saved",
                f"The low-balance alert is a whole number of credits from 1 to {MAX_LOW_BALANCE_CREDITS:,} "
                "and the budget alert a whole percent from 1 to 100; leave one empty to turn it off.",
            )
        stored = await money.set_alerts(user.tenant_id, low, percent)
        thresholds = stored.thresholds
        shown = f"low balance: {thresholds.low_balance_credits}, budget: {thresholds.budget_percent}%"
        await record_activity(deps, request, user, "alerts.changed", "tenant", user.tenant_id, shown)
        return RedirectResponse(CREDITS_PATH, status_code=303)

    async def set_auto_top_up(request: Request, user: CurrentUser) -> Response:
        fields = await form_fields(request)
        threshold = _whole(fields.get("threshold_credits", ""), 1, MAX_THRESHOLD_CREDITS)
        per_month = _whole(fields.get("max_per_month", ""), 1, MAX_PER_MONTH)
        if not threshold or per_month is False:
            return pages.message(
                request,
                user,
                422,
                "Automatic top-up not saved",
                f"The threshold is a whole number of credits from 1 to {MAX_THRESHOLD_CREDITS:,} and the "
                f"purchases per month a whole number from 1 to {MAX_PER_MONTH}.",
            )
        update = AutoTopUpUpdate(
            enabled=fields.get("enabled") == "on",
            threshold_credits=threshold,
            pack_id=fields.get("pack_id", ""),
            max_per_month=per_month or 1,
        )
        try:
            stored = await money.set_auto_top_up(user.tenant_id, update)
        except grpc.aio.AioRpcError as error:
            refusal = _AUTO_TOP_UP_REFUSALS.get(remote_error(error).reason)
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                refusal = (422, "There is no such pack.")
            if refusal is None:
                raise
            return pages.message(request, user, refusal[0], "Automatic top-up not turned on", refusal[1])
        shown = "off"
        if stored.enabled:
            per_month = stored.max_per_month
            shown = f"on: {stored.pack_id} below {stored.threshold_credits}, at most {per_month}/month"
        await record_activity(deps, request, user, "auto_top_up.changed", "tenant", user.tenant_id, shown)
        return RedirectResponse(CREDITS_PATH, status_code=303)

    return {
        "set_auto_top_up": set_auto_top_up,
        "set_alerts": set_alerts,
        "set_budget": set_budget,
        "credits": credits,
        "buy_credits": buy_credits,
        "receipt": receipt,
        "credit_settings": credit_settings,
    }


# Why billing refused to turn automatic top-up on, as the console explains it.
_AUTO_TOP_UP_REFUSALS = {
    "no_saved_payment_method": (
        409,
        "No card is saved for automatic payments yet: buy a pack with Stripe once (the card you pay with"
        " is saved), then turn automatic top-up on.",
    ),
    "payments_not_configured": (503, "Online payments are not available on this installation."),
    "checkout_unavailable": (503, "Stripe did not answer; nothing was changed. Try again in a moment."),
}


def _whole(typed: str, low: int, high: int) -> int | Literal[False] | None:
    """A form's whole number within [low, high] (thousands separators allowed), None when empty,
    False when it is anything else."""
    cleaned = typed.strip().replace(",", "")
    if not cleaned:
        return None
    if not cleaned.isdigit() or not low <= int(cleaned) <= high:
        return False
    return int(cleaned)
