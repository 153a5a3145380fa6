"""The OpenAPI documents an SDK generator uses (issue 25): the customer API's validates as
OpenAPI, every operation of both documents has a unique readable operationId and a description,
every list takes one page-size rule, the customer document lists the webhooks we send and the two
documents share no operation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
Documents = dict[str, dict[str, Any]]
EVENTS = {"batch.queued", "batch.completed", "batch.cancelled", "task.succeeded", "task.failed"}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


@pytest.fixture
def documents(client: TestClient) -> Documents:
    return {url: client.get(url).json() for url in ("/openapi.json", "/admin/openapi.json")}


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*map(_refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(_refs, node))
    return set()


def test_both_documents_validate_as_openapi_with_no_dangling_reference(documents: Documents) -> None:
    for document in documents.values():
        validate(document)
        defined = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
        assert _refs(document) <= defined, _refs(document) - defined


def test_every_operation_has_a_unique_readable_id_and_a_description(
    documents: Documents,
) -> None:
    seen: list[str] = []
    for document in documents.values():
        for method, path, operation in _operations(document):
            operation_id = operation.get("operationId", "")
            assert SNAKE_CASE.match(operation_id), f"{method} {path}: operationId {operation_id!r}"
            description = operation.get("description", "").strip()
            assert description, f"{method} {path} ({operation_id}) has no description"
            assert description != operation.get("summary"), f"{operation_id}: description repeats the summary"
            seen.append(operation_id)
    assert len(seen) == len(set(seen)), sorted(name for name in seen if seen.count(name) > 1)
    assert {"create_video_batch", "list_video_batch_tasks", "list_models", "upload_file"} <= set(seen)


def test_every_list_takes_the_one_page_size_rule(documents: Documents) -> None:
    limits = {}
    for document in documents.values():
        for method, path, operation in _operations(document):
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit" and parameter["in"] == "query":
                    schema = parameter["schema"]
                    limits[f"{method} {path}"] = (schema.get("minimum"), schema.get("maximum"))
    assert len(limits) >= 10
    assert set(limits.values()) == {(1, 1000)}, limits


def test_the_two_documents_split_customer_and_operator_operations(
    documents: Documents,
) -> None:
    customer = set(documents["/openapi.json"]["paths"])
    operator = set(documents["/admin/openapi.json"]["paths"])
    assert not customer & operator
    assert all(path.startswith(("/api/enterprise", "/videos")) for path in customer)
    assert all(path.startswith(("/api/admin", "/api/payments", "/healthz", "/readyz")) for path in operator)


def test_the_customer_document_lists_every_webhook_with_its_payload_and_signing(
    documents: Documents,
) -> None:
    webhooks = documents["/openapi.json"]["webhooks"]
    assert set(webhooks) == {
        "batch.queued",
        "batch.completed",
        "batch.cancelled",
        "task.succeeded",
        "task.failed",
        "credits.low",
        "budget.threshold",
        "auto_top_up.failed",
    }
    for event, operations in webhooks.items():
        post = operations["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith(
            "#/components/"
        )
        assert "webhook-signature" in post["description"], event
    assert (
        "webhooks" not in documents["/admin/openapi.json"] or not documents["/admin/openapi.json"]["webhooks"]
    )


def test_registering_an_endpoint_documents_the_409_of_a_repeated_url(
    documents: Documents,
) -> None:
    create = documents["/openapi.json"]["paths"]["/api/enterprise/webhook-endpoints"]["post"]
    assert "409" in create["responses"]
