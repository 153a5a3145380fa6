"""schemathesis against the live OpenAPI documents of a running stack (the customer API's
`/openapi.json` and the operator API's `/admin/openapi.json`), bounded in examples and time:
no 5xx, every response matches the documented schema, every 4xx has the JSON error shape.

Requests carry both a tenant's API key and the admin token, so customer and admin operations are
exercised past authentication. The Stripe webhook (signed by Stripe, not by our credentials) is
left to its own tests.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.rest_api import Api
from tests.stack import ADMIN_TOKEN, Stack

# Per operation; about 60 operations, so a few hundred requests in all.
MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def credentials(api: Api) -> dict[str, str]:
    customer = api.new_customer(credits=10_000)
    return {"X-API-Key": customer.api_key, "Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def openapi_schemas(stack: Stack) -> list[Any]:
    return [
        schemathesis.openapi.from_url(f"{stack.base_url}{document}").exclude(path_regex=r"^/api/payments/")
        for document in ("/openapi.json", "/admin/openapi.json")
    ]


def _error_shape(response: Any) -> None:
    if 400 <= response.status_code < 500:
        body = response.json()
        assert body["ok"] is False, body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
        assert isinstance(body["error"]["message"], str), body


@pytest.mark.timeout(300)
def test_every_operation_answers_as_documented(
    openapi_schemas: list[Any], credentials: dict[str, str]
) -> None:
    failures: dict[str, str] = {}
    calls: list[str] = []
    operations = [result.ok() for schema in openapi_schemas for result in schema.get_all_operations()]
    assert len(operations) > 40

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            calls.append(case.operation.label)
            response = case.call(headers={**dict(case.headers or {}), **credentials}, timeout=30)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
            _error_shape(response)

        try:
            answers_as_documented()
        except (Exception, BaseExceptionGroup) as failure:  # one report listing every failing operation
            failures[operation.label] = f"{type(failure).__name__}: {failure}"[:2000]

    # Every operation was exercised, most with several examples.
    assert set(calls) == {operation.label for operation in operations}
    assert len(calls) > 3 * len(operations)
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
