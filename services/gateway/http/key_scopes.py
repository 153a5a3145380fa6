"""What an API key's scopes let it do (ADR-124): one table from (method, path) to the scope needed.

`read` covers every GET; `billing` covers changing money settings (budgets, alert thresholds,
automatic top-up) and keys; `batches` covers every other change (creating, cancelling, retrying
batches, quotes, files, webhooks). A key created without scopes has all three, so every key
issued before scopes existed works as before.
"""

from __future__ import annotations

from enum import StrEnum

from services.gateway.http.errors import ApiError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class KeyScope(StrEnum):
    """The scopes of a customer key (billing's `KeyScope`, by name over gRPC)."""

    BATCHES = "batches"
    READ = "read"
    BILLING = "billing"


ALL_SCOPES = frozenset(scope.value for scope in KeyScope)

# Paths under /api/enterprise whose changes move money settings or credentials.
_BILLING_PREFIXES = ("/api/enterprise/api-keys", "/api/enterprise/alerts", "/api/enterprise/auto-top-up")
_BILLING_SUFFIX = "/budget"


def required_scope(method: str, path: str) -> KeyScope:
    """The scope a customer request needs."""
    if method.upper() in READ_METHODS:
        return KeyScope.READ
    if path.startswith(_BILLING_PREFIXES) or path.rstrip("/").endswith(_BILLING_SUFFIX):
        return KeyScope.BILLING
    return KeyScope.BATCHES


def ensure_scope(scopes: frozenset[str], method: str, path: str) -> None:
    """Raises 403 `insufficient_scope` when the key lacks the scope of this request."""
    needed = required_scope(method, path)
    if needed.value not in scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"this API key lacks the `{needed.value}` scope this request needs",
            extra={"required_scope": needed.value},
        )
