"""Requests the HTTP parser itself refuses, sent byte for byte over a raw socket: they get the JSON
error envelope like every other refusal, not the web server's plain-text 400."""

from __future__ import annotations

import json
import socket

import pytest

from services.gateway.http.protocol import MALFORMED_REQUEST_MESSAGE
from tests.rest_api import Api, Customer
from tests.stack import Stack


def _exchange(stack: Stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends raw bytes and reads the answer until the server closes or has sent its body."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split(" ")[1]), headers, body


@pytest.fixture(scope="module")
def customer(api: Api) -> Customer:
    return api.new_customer(credits=100)


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x00b", b"a\x1fb", b"a\x7fb", b"a\rb"], ids=repr)
def test_a_control_byte_in_a_header_value_is_answered_with_the_json_error_envelope(
    stack: Stack, customer: Customer, value: bytes
) -> None:
    request = (
        b"GET /api/enterprise/credits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"X-API-Key: {customer.api_key}\r\n".encode()
        + b"X-Request-ID: "
        + value
        + b"\r\n\r\n"
    )
    status, headers, body = _exchange(stack, request)

    assert 400 <= status < 500, (status, body)
    assert headers["content-type"].startswith("application/json"), (headers, body)
    document = json.loads(body)
    assert document["ok"] is False
    assert isinstance(document["error"]["code"], str) and document["error"]["message"]


def test_a_malformed_request_line_is_answered_with_the_json_error_envelope(stack: Stack) -> None:
    status, headers, body = _exchange(stack, b"GET /api/enterprise/credits\x01 HTTP/1.1\r\nHost: x\r\n\r\n")

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "ok": False,
        "error": {"code": "bad_request", "message": MALFORMED_REQUEST_MESSAGE},
    }
