"""Which escaping errors a gRPC server answers with UNAVAILABLE (the caller's channel retries it,
the gateway answers 503 with Retry-After) rather than INTERNAL (a 500).

The hot paths run statements on the psycopg connection itself, so a database blip reaches the
server unwrapped (`psycopg.OperationalError`, `AdminShutdown`) as often as wrapped by SQLAlchemy.
"""

from __future__ import annotations

import grpc
import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc

from libs.errors import NotFound
from libs.rpc.errors import failure_status

_LOST = "consuming input failed: server closed the connection unexpectedly"

DEPENDENCY_DOWN: list[tuple[str, Exception]] = [
    ("raw OperationalError", psycopg.OperationalError(_LOST)),
    ("raw AdminShutdown", pg_errors.AdminShutdown("terminating connection due to administrator command")),
    ("raw CannotConnectNow", pg_errors.CannotConnectNow("the database system is starting up")),
    ("raw pool timeout", PoolTimeout("couldn't get a connection after 30.00 sec")),
    ("wrapped OperationalError", sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(_LOST))),
    (
        "DBAPIError around an OperationalError",
        sa_exc.DBAPIError("SELECT 1", {}, psycopg.OperationalError(_LOST)),
    ),
    (
        "InterfaceError on an invalidated connection",
        sa_exc.InterfaceError(
            "SELECT 1", {}, psycopg.InterfaceError("the connection is closed"), connection_invalidated=True
        ),
    ),
    ("SQLAlchemy pool timeout", sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached")),
    ("socket refused", ConnectionRefusedError(111, "Connection refused")),
    ("timeout", TimeoutError()),
]

BUGS: list[tuple[str, Exception]] = [
    ("a bug", ValueError("bad")),
    ("a programming error", psycopg.ProgrammingError("syntax error at or near")),
    ("a broken constraint", pg_errors.UniqueViolation("duplicate key value")),
    ("a wrapped integrity error", sa_exc.IntegrityError("INSERT", {}, pg_errors.UniqueViolation("dup"))),
]


@pytest.mark.parametrize(("case", "error"), DEPENDENCY_DOWN, ids=[case for case, _ in DEPENDENCY_DOWN])
def test_a_database_out_of_reach_is_answered_unavailable_in_every_spelling(
    case: str, error: Exception
) -> None:
    assert failure_status(error, "/test/Method").code == grpc.StatusCode.UNAVAILABLE, case


@pytest.mark.parametrize(("case", "error"), BUGS, ids=[case for case, _ in BUGS])
def test_anything_else_is_internal(case: str, error: Exception) -> None:
    assert failure_status(error, "/test/Method").code == grpc.StatusCode.INTERNAL, case


def test_a_refusal_keeps_its_own_status() -> None:
    assert failure_status(NotFound("no such batch"), "/test/Method").code == grpc.StatusCode.NOT_FOUND
