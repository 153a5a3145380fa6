"""`reelbatch-client webhooks test`: a local receiver that verifies every webhook it gets.

    reelbatch-client webhooks test --listen 127.0.0.1:8787 --count 2
    # then submit a batch with --webhook-url http://127.0.0.1:8787/hook (or point an endpoint at it)

Each POST is checked with the tenant's signing secret (fetched with the API key; `--secret` for a
registered endpoint's own) through `reelbatch_client.webhooks`, answered 204 when it verifies and
401 when not, and printed as its typed event. Exit 0 after `--count` verified events, 9 as soon as
one fails to verify, 8 when `--timeout` passes first.
"""

from __future__ import annotations

import argparse
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from reelbatch_client.cli_codes import ExitCode
from reelbatch_client.cli_output import Output, add_common_options
from reelbatch_client.models import WebhookEvent

if TYPE_CHECKING:
    from reelbatch_client.client import Client

Received = tuple[WebhookEvent | None, str | None]


def _handler(secret: str, received: queue.Queue[Received]) -> type[BaseHTTPRequestHandler]:
    from reelbatch_client.webhooks import InvalidSignature, verify_event

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                event = verify_event(body, dict(self.headers.items()), secret)
            except InvalidSignature as error:
                self.send_response(401)
                received.put((None, str(error)))
            else:
                self.send_response(204)
                received.put((event, None))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the command prints events itself

    return Receiver


def cmd_webhooks_test(client: Client, output: Output, args: argparse.Namespace) -> ExitCode:
    """Listens, verifies, prints; see the module doc for the exit codes."""
    secret = args.secret or client.signing_secret().secret
    host, _, port = args.listen.rpartition(":")
    received: queue.Queue[Received] = queue.Queue()
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), _handler(secret, received))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    output.note(
        f"listening on http://{host or '127.0.0.1'}:{server.server_address[1]}/ for {args.count} event(s)"
    )
    events: list[WebhookEvent] = []
    code = ExitCode.OK
    try:
        while len(events) < args.count:
            try:
                event, problem = received.get(timeout=args.timeout)
            except queue.Empty:
                code = ExitCode.TIMEOUT
                output.note(f"no webhook within {args.timeout} s")
                break
            if event is None:
                code = ExitCode.BAD_SIGNATURE
                output.note(f"signature did NOT verify: {problem}")
                break
            events.append(event)
            about = getattr(event.data, "batch_id", None) or getattr(event.data, "alert_id", "")
            output.note(f"verified {event.type} {about} at {event.timestamp}")
    finally:
        server.shutdown()
        server.server_close()
    if output.as_json:
        output.document({"verified": events, "ok": code == ExitCode.OK})
    return code


def add_webhook_commands(commands: Any) -> None:
    """Adds `webhooks test` to the command parser."""
    webhooks = commands.add_parser("webhooks", help="webhook tools")
    actions = webhooks.add_subparsers(dest="webhook_command", required=True)
    test = actions.add_parser("test", help="receive webhooks locally and verify their signatures")
    test.add_argument("--listen", default="127.0.0.1:8787", metavar="HOST:PORT")
    test.add_argument("--secret", help="an endpoint's secret (default: the tenant's signing secret)")
    test.add_argument("--count", type=int, default=1, help="stop after this many verified events")
    test.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each event")
    test.set_defaults(run=cmd_webhooks_test)
    add_common_options(test)
