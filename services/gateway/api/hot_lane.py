"""The hot lane: the requests clients send most, answered in front of FastAPI.

A client waiting for its batch asks for the batch and its tasks again and again, and a busy
tenant creates batches by the hundred a second; on these paths FastAPI's routing, dependency
solving, response handling and the middleware stack Starlette builds around every app cost more
CPU than the request's own work (ADR-029, ADR-035, ADR-044). The lane answers the plainly valid
GETs of a batch and of a page of its tasks (a UUID batch id and, for tasks, nothing but `status`,
`cursor` and `limit`, each once, with values FastAPI would accept as they are) and every POST to
the create path sent as plain JSON with a Content-Length (no gzip, no JSONL, no query string, no
Idempotency-Key: those forms are the FastAPI route's alone). Everything else goes on to the
FastAPI app, whose routes answer it (errors included) as /openapi.json documents. Both share
the authentication, the backend calls and rendering (`BatchReads`, `BatchCreation`) and the
error answers (`failure_response`), and both run inside the app's `RequestContextMiddleware`
configuration (`create_app` wraps both), so span, metric, request id, body limit and
last-resort 500 are the same too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import get_args
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.http.auth import API_KEY_HEADER, ApiKeyAuthenticator, authenticated_caller
from services.gateway.http.errors import failure_response
from services.gateway.http.middleware import REQUEST_ID_HEADER, ROUTE_TEMPLATE_KEY, request_id_of
from services.gateway.http.params import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, is_page_cursor, is_uuid
from services.gateway.schemas.tasks import TaskStatus
from services.gateway.use_cases.batch_creation import BatchCreation
from services.gateway.use_cases.batch_reads import BatchReads

CREATE_ROUTE = "/api/enterprise/video-batch"
BATCH_ROUTE = "/api/enterprise/video-batch/{batch_id}"
TASKS_ROUTE = "/api/enterprise/video-batch/{batch_id}/tasks"

_PREFIX = "/api/enterprise/video-batch/"
_API_KEY = API_KEY_HEADER.lower().encode()
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_TASK_STATUSES = frozenset(get_args(TaskStatus))
_PAGE_PARAMETERS = frozenset({"status", "cursor", "limit"})
# Where the lane leaves the read it recognised for its own answering step (None for a create).
_PLAIN_READ_KEY = "reelbatch.plain_read"
# As Starlette's `Response(media_type="application/json")` starts an answer (the length first).
_JSON = b"application/json"
_IDEMPOTENCY_KEY = b"idempotency-key"
_CONTENT_ENCODING = b"content-encoding"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_REPLAYED = b"idempotent-replayed"


@dataclass(frozen=True)
class TaskQuery:
    """The page of tasks asked for."""

    status: str = ""
    cursor: str = ""
    limit: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True)
class PlainRead:
    """A read the lane answers: which route, the batch id (lower case), the page for tasks."""

    route: str
    batch_id: str
    page: TaskQuery | None = None


def plain_read(path: str, query_string: bytes) -> PlainRead | None:
    """The read a GET asks for when it is plainly valid; None sends it to the FastAPI routes."""
    if not path.startswith(_PREFIX):
        return None
    batch_id, slash, tail = path[len(_PREFIX) :].partition("/")
    if not is_uuid(batch_id):
        return None
    if not slash:
        # FastAPI ignores query parameters this route does not declare; so does the lane.
        return PlainRead(BATCH_ROUTE, batch_id.lower())
    if tail != "tasks":
        return None
    page = _task_query(query_string)
    return PlainRead(TASKS_ROUTE, batch_id.lower(), page) if page is not None else None


def _task_query(query_string: bytes) -> TaskQuery | None:
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    values = dict(pairs)
    if len(values) != len(pairs) or not values.keys() <= _PAGE_PARAMETERS:
        return None  # a repeated or unknown parameter: FastAPI decides what it means
    status = values.get("status")
    cursor = values.get("cursor")
    limit = values.get("limit")
    if status is not None and status not in _TASK_STATUSES:
        return None
    if cursor is not None and not (cursor and is_page_cursor(cursor)):
        return None
    # Plain decimal digits only: signs, spaces and leading zeros are FastAPI's to judge.
    if limit is not None and not (
        limit.isascii() and limit.isdigit() and limit[0] != "0" and int(limit) <= MAX_PAGE_SIZE
    ):
        return None
    return TaskQuery(status or "", cursor or "", int(limit) if limit else DEFAULT_PAGE_SIZE)


def _plain_create(scope: Scope) -> bool:
    """A create the lane answers: JSON (or no type) with a declared length, nothing else to read
    (the middleware checked the length against the create limit)."""
    if scope["query_string"]:
        return False
    sized = False
    for name, value in scope["headers"]:
        if name in (_IDEMPOTENCY_KEY, _CONTENT_ENCODING):
            return False
        if name == _CONTENT_TYPE and value.split(b";")[0].strip().lower() != _JSON:
            return False
        sized = sized or name == _CONTENT_LENGTH
    return sized


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    # The first of repeated headers counts, as with Starlette's `Headers.get`.
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


async def _body(receive: Receive) -> bytes:
    # As Starlette's `Request.body()` reads it (the size limit is enforced around the lane).
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class HotLane:
    """ASGI app in front of the FastAPI app: answers `plain_read`s and creates itself, inside the
    request context `in_request_context` wraps around its answering step (the app's middleware,
    configured as for the app); passes every other request (and the lifespan) to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        reads: BatchReads,
        creation: BatchCreation,
        authenticator: ApiKeyAuthenticator,
        *,
        in_request_context: Callable[[ASGIApp], ASGIApp],
    ) -> None:
        self.app = app
        self._reads = reads
        self._creation = creation
        self._authenticator = authenticator
        self._in_context = in_request_context(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "GET":
                read = plain_read(scope["path"], scope["query_string"])
                if read is not None:
                    scope[ROUTE_TEMPLATE_KEY] = read.route
                    scope[_PLAIN_READ_KEY] = read
                    await self._in_context(scope, receive, send)
                    return
            elif scope["method"] == "POST" and scope["path"] == CREATE_ROUTE and _plain_create(scope):
                scope[ROUTE_TEMPLATE_KEY] = CREATE_ROUTE
                await self._in_context(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        read: PlainRead | None = scope.get(_PLAIN_READ_KEY)
        if read is not None:
            await self._answer(self._read(read, scope), scope, receive, send, status=200)
        else:
            await self._answer(self._create(scope, receive), scope, receive, send, status=202)

    async def _read(self, read: PlainRead, scope: Scope) -> tuple[bytes, bool]:
        caller = await authenticated_caller(self._authenticator, _header(scope["headers"], _API_KEY))
        if read.page is None:
            return await self._reads.batch(caller.tenant_id, read.batch_id), False
        page = read.page
        body = await self._reads.task_page(
            caller, read.batch_id, status=page.status, cursor=page.cursor, limit=page.limit
        )
        return body, False

    async def _create(self, scope: Scope, receive: Receive) -> tuple[bytes, bool]:
        headers = scope["headers"]
        caller = await authenticated_caller(self._authenticator, _header(headers, _API_KEY))
        return await self._creation.create(
            caller.tenant_id, _header(headers, _REQUEST_ID) or "", request_id_of(scope), await _body(receive)
        )

    async def _answer(
        self, work: Awaitable[tuple[bytes, bool]], scope: Scope, receive: Receive, send: Send, *, status: int
    ) -> None:
        """Sends the JSON `work` answers; its flag marks a replayed create (Idempotent-Replayed, as
        the FastAPI route says it)."""
        try:
            body, replayed = await work
        except Exception as error:
            failed = failure_response(error, scope["method"], scope["path"])
            if failed is None:
                raise
            await failed(scope, receive, send)
            return
        # The two messages a starlette `Response` would send, without building one.
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON)]
        if replayed:
            headers.append((_REPLAYED, b"true"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
