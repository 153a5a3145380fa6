"""The one home of "this error says a dependency is out of reach for now, not that we are wrong".

Two callers read it: a gRPC server answers such an error UNAVAILABLE (its caller retries, the
gateway answers 503), and a batch worker retries the task whose attempt met it instead of
failing the task (a pool with no connection to give under a burst is the worker's own
congestion, never the customer's or the provider's fault; ADR-161).
"""

from __future__ import annotations


def is_dependency_down(error: BaseException) -> bool:
    """Whether `error` says the database (or another dependency) is out of reach for now.

    SQLAlchemy wraps the driver's errors, but the hot paths run statements on the psycopg
    connection itself, so its errors arrive unwrapped: both spellings count. PostgreSQL ending a
    connection (`pg_terminate_backend`, a restart, a failover) raises `psycopg.OperationalError`
    (`AdminShutdown` is one), as do a pool that has no connection to give (`PoolTimeout`) and a
    lost socket.
    """
    # Imported here: the gateway uses this module only as a gRPC client and has no database;
    # importing SQLAlchemy would cost it ~0.7 s of CPU at start. Servers have it loaded already.
    import psycopg
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import OperationalError as WrappedOperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(error, (psycopg.OperationalError, WrappedOperationalError, PoolTimeout)):
        return True
    if isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error.orig, psycopg.OperationalError)
    ):
        return True
    return isinstance(error, (ConnectionError, TimeoutError))
