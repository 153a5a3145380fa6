"""Which scope each customer request needs (ADR-124): a batches-only key cannot change budgets."""

from __future__ import annotations

import pytest

from services.gateway.http.errors import ApiError
from services.gateway.http.key_scopes import KeyScope, ensure_scope, required_scope


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/enterprise/budget", KeyScope.READ),
        ("PUT", "/api/enterprise/budget", KeyScope.BILLING),
        ("PUT", "/api/enterprise/api-keys/3f1c/budget", KeyScope.BILLING),
        ("PUT", "/api/enterprise/projects/launch/budget", KeyScope.BILLING),
        ("DELETE", "/api/enterprise/api-keys/3f1c", KeyScope.BILLING),
        ("POST", "/api/enterprise/video-batch", KeyScope.BATCHES),
        ("POST", "/api/enterprise/quotes", KeyScope.BATCHES),
        ("GET", "/api/enterprise/video-batch/1", KeyScope.READ),
    ],
)
def test_each_request_needs_its_scope(method: str, path: str, scope: KeyScope) -> None:
    assert required_scope(method, path) is scope


def test_a_batches_only_key_cannot_lift_its_budget() -> None:
    ensure_scope(frozenset({"batches"}), "POST", "/api/enterprise/video-batch")
    with pytest.raises(ApiError) as refused:
        ensure_scope(frozenset({"batches"}), "PUT", "/api/enterprise/budget")
    assert (refused.value.status, refused.value.code) == (403, "insufficient_scope")
    assert refused.value.extra == {"required_scope": "billing"}
