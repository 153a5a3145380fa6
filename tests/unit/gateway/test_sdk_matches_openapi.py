"""The customer SDK (clients/python) cannot drift from the API: its models are compared, field by
field, with the schemas of the live application's `/openapi.json`, every customer operation has a
call in the SDK, and the results-file model has exactly the columns the gateway writes.

When this fails after a change of the API, update `reelbatch_client.models` / `calls` to match."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from reelbatch_client import calls, models

from libs.config import Settings
from services.gateway.entrypoints.app import create_app
from services.gateway.use_cases.batch_results import RESULT_COLUMNS
from tests.unit.gateway.gateway_fakes import (
    ADMIN_TOKEN,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
)

# Schemas the SDK reads through other means: pages are unwrapped by the iterators, the upload's
# multipart body is built from a path, and VideoMode is a plain string parameter.
NOT_MODELLED = {
    "BatchPage",
    "TaskPage",
    "LedgerPage",
    "EndpointPage",
    "DeliveryPage",
    "Body_upload_file",
    "VideoMode",
}
REQUEST_MODELS = {
    models.BatchItem,
    models.CreateBatchRequest,
    models.GenerationSettings,
    models.ImageInput,
    models.RetryFailedRequest,
    models.EndpointIn,
    models.BudgetUpdate,
    models.AlertThresholdsUpdate,
    models.AutoTopUpUpdate,
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The live application's customer document (built once: the app takes seconds to build)."""
    settings = Settings(admin_token=ADMIN_TOKEN, asset_dir=str(tmp_path_factory.mktemp("assets")))
    backends = fake_backends(FakeBilling(), FakeBatch(), Readiness(), FakeWebhook())
    with TestClient(create_app(settings, backends)) as client:
        body: dict[str, Any] = client.get("/openapi.json").json()
    return body


def _allows_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(_allows_null(s) for s in schema.get("anyOf", []))


def _accepts_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def test_every_customer_schema_has_an_sdk_model(document: dict[str, Any]) -> None:
    schemas = set(document["components"]["schemas"])
    assert schemas - NOT_MODELLED == set(models.SCHEMAS), (
        f"new in the API: {sorted(schemas - NOT_MODELLED - set(models.SCHEMAS))}; "
        f"gone from it: {sorted(set(models.SCHEMAS) - schemas)}"
    )


@pytest.mark.parametrize("name", sorted(models.SCHEMAS))
def test_each_model_has_the_fields_of_its_schema(document: dict[str, Any], name: str) -> None:
    schema = document["components"]["schemas"][name]
    model: type[BaseModel] = models.SCHEMAS[name]
    properties: dict[str, Any] = schema.get("properties", {})
    assert set(model.model_fields) == set(properties), (
        f"{name}: missing in the SDK {sorted(set(properties) - set(model.model_fields))}, "
        f"not in the API {sorted(set(model.model_fields) - set(properties))}"
    )
    required_by_sdk = {field for field, info in model.model_fields.items() if info.is_required()}
    required_by_api = set(schema.get("required", []))
    if model in REQUEST_MODELS:
        assert required_by_sdk == required_by_api, name
    else:
        # The SDK never insists on a field the API may leave out.
        assert required_by_sdk <= required_by_api, (name, required_by_sdk - required_by_api)
    for field, prop in properties.items():
        if _allows_null(prop):
            assert _accepts_none(model.model_fields[field].annotation), f"{name}.{field} may be null"


def test_every_customer_operation_has_an_sdk_call(document: dict[str, Any]) -> None:
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert operations == set(calls.OPERATIONS), (
        f"without an SDK call: {sorted(operations - set(calls.OPERATIONS))}; "
        f"gone: {sorted(set(calls.OPERATIONS) - operations)}"
    )


def test_the_result_line_model_has_the_columns_the_gateway_writes() -> None:
    assert list(models.ResultLine.model_fields) == list(RESULT_COLUMNS)


def test_the_webhook_event_types_are_the_documented_ones(document: dict[str, Any]) -> None:
    documented = set(document["webhooks"])
    typed = {
        value
        for event in get_args(models.WebhookEvent)
        for value in get_args(event.model_fields["type"].annotation)
    }
    assert typed == documented
