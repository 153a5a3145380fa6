"""Input images for the end-to-end tests: a local file server of them, and an upload."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.rest_api import Api, Customer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class _Images(BaseHTTPRequestHandler):
    """/frame.png is a PNG, /text.txt is not an image, anything else is a 404."""

    def do_GET(self) -> None:
        bodies = {"/frame.png": (PNG, "image/png"), "/text.txt": (b"not an image", "text/plain")}
        found = bodies.get(self.path)
        if found is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", found[1])
        self.send_header("Content-Length", str(len(found[0])))
        self.end_headers()
        self.wfile.write(found[0])

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def image_server() -> Iterator[str]:
    """A local file server of input images while the block runs: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def upload_image(api: Api, customer: Customer, content: bytes, name: str = "frame.png") -> str:
    """Uploads an input image (`POST /api/enterprise/files`); its file id."""
    uploaded = api.http.post(
        "/api/enterprise/files",
        headers=customer.headers,
        files={"file": (name, content, "application/octet-stream")},
        data={"purpose": "video_input"},
    )
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert body["content_type"] == "image/png" and body["bytes"] == len(content)
    file_id: str = body["file_id"]
    return file_id
