"""The HTTP/1.1 protocol the gateway's uvicorn speaks: uvicorn's httptools protocol, except that a
request it cannot parse (a control byte in a header value, a malformed request line) is answered
with the JSON error envelope every other refusal has, not uvicorn's plain-text 400.

Such a request never reaches the app (the parser refuses it first), so no middleware can answer it.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.gateway.http.errors import error_body

MALFORMED_REQUEST_MESSAGE = "malformed HTTP request (invalid request line or header)"

_MALFORMED_REQUEST_BODY = orjson.dumps(error_body("bad_request", MALFORMED_REQUEST_MESSAGE))


class JsonErrorHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the JSON error envelope for requests it cannot parse."""

    def send_400_response(self, msg: str) -> None:
        """Answers 400 `bad_request` as JSON and closes the connection (the parser cannot go on)."""
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(_MALFORMED_REQUEST_BODY)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _MALFORMED_REQUEST_BODY,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
