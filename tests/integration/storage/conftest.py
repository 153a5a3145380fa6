"""A real S3-compatible server for storage tests: moto in server mode, with SigV4 enforced.

moto checks signatures only when its IAM authentication is on, so the fixture creates an IAM user
with an access key and an `s3:*` policy while authentication is still off, then switches it on
(`INITIAL_NO_AUTH_ACTION_COUNT = 0`): from then on every request must carry a valid signature of
a known key, exactly like AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

from libs.s3 import S3Credentials
from tests.integration.storage.s3_harness import S3Clients, S3Server

_IAM_SCOPE = (
    "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"
)


def _iam(endpoint_url: str, **params: str) -> str:
    # Authentication is still off: moto only needs the credential scope to route this to IAM.
    response = httpx.post(
        endpoint_url,
        data={**params, "Version": "2010-05-08"},
        headers={"Authorization": _IAM_SCOPE},
    )
    assert response.status_code == 200, response.text
    return response.text


def _tag(xml: str, name: str) -> str:
    found = re.search(f"<{name}>([^<]+)</{name}>", xml)
    assert found is not None, xml
    return found.group(1)


@pytest.fixture(scope="package")
def s3_server() -> Iterator[S3Server]:
    """moto on 127.0.0.1 (a free port), enforcing SigV4 for one IAM user allowed s3:*."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    _iam(endpoint_url, Action="CreateUser", UserName="reelbatch")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    _iam(
        endpoint_url,
        Action="PutUserPolicy",
        UserName="reelbatch",
        PolicyName="videos",
        PolicyDocument=json.dumps(policy),
    )
    created = _iam(endpoint_url, Action="CreateAccessKey", UserName="reelbatch")
    credentials = S3Credentials(_tag(created, "AccessKeyId"), _tag(created, "SecretAccessKey"))
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield S3Server(endpoint_url, credentials)
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client (no credentials of its own)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
async def s3_clients() -> AsyncIterator[S3Clients]:
    """Clients of test buckets, closed when the test ends."""
    clients = S3Clients()
    try:
        yield clients
    finally:
        await clients.close()
