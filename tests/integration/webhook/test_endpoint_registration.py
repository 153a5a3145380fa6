"""One live endpoint per (tenant, URL): registering the same URL again is refused (409 at the
REST API) and names the endpoint that exists, even when two registrations race."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from libs.errors import ErrorCategory
from services.webhook.domain.errors import EndpointAlreadyRegistered

from .conftest import HandlersFactory

URL = "http://127.0.0.1:9/reelbatch-hook"


async def test_the_same_url_twice_is_refused_naming_the_existing_endpoint(
    make_handlers: HandlersFactory,
) -> None:
    handlers = make_handlers()
    tenant_id = str(uuid.uuid4())
    first, _ = await handlers.create_endpoint(tenant_id, URL, [], "")

    with pytest.raises(EndpointAlreadyRegistered) as refused:
        await handlers.create_endpoint(tenant_id, URL, ["task.failed"], "again")

    assert refused.value.category is ErrorCategory.ALREADY_EXISTS
    assert refused.value.details["endpoint_id"] == first.endpoint_id
    endpoints, _ = await handlers.list_endpoints(tenant_id, "", 50)
    assert [endpoint.endpoint_id for endpoint in endpoints] == [first.endpoint_id]


async def test_another_tenant_or_a_deleted_endpoints_url_may_be_registered(
    make_handlers: HandlersFactory,
) -> None:
    handlers = make_handlers()
    tenant_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    first, _ = await handlers.create_endpoint(tenant_id, URL, [], "")
    await handlers.create_endpoint(other, URL, [], "")
    await handlers.delete_endpoint(tenant_id, first.endpoint_id)

    again, _ = await handlers.create_endpoint(tenant_id, URL, [], "")

    assert again.endpoint_id != first.endpoint_id


async def test_two_racing_registrations_of_one_url_make_one_endpoint(make_handlers: HandlersFactory) -> None:
    handlers = make_handlers()
    tenant_id = str(uuid.uuid4())

    outcomes = await asyncio.gather(
        *(handlers.create_endpoint(tenant_id, URL, [], "") for _ in range(5)), return_exceptions=True
    )

    created = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, EndpointAlreadyRegistered)]
    assert (len(created), len(refused)) == (1, 4)
    endpoints, _ = await handlers.list_endpoints(tenant_id, "", 50)
    assert len(endpoints) == 1
