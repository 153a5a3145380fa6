"""Fresh, throw-away PostgreSQL databases and RabbitMQ vhosts for test isolation."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import psycopg
from psycopg import sql

from libs.migrations import upgrade_to

ADMIN_DSN = os.environ.get("REELBATCH_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("REELBATCH_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Migrated templates are named `rb_tpl_<hash of the schema's sources>_<unix time of the build>`; one
# is built under a temporary name and renamed when complete, so a template under its final name is
# always a finished one.
TEMPLATE_PREFIX = "rb_tpl_"
BUILDING_PREFIX = "rb_tplbuild_"
# A template of other migrations (another checkout's, or from before a migration changed) is
# dropped when a new one is built and it is older than this: sessions running other migrations at
# the same time keep theirs instead of dropping each other's in turn.
STALE_TEMPLATE_SECONDS = 24 * 3600
# Serializes template builds across processes and pytest sessions sharing this server.
_TEMPLATE_LOCK = zlib.crc32(b"reelbatch-test-migrated-template")

_template: str | None = None


def _url_of(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def create_database() -> tuple[str, str]:
    """Creates an empty database; returns (name, SQLAlchemy URL)."""
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, _url_of(name)


def create_migrated_database() -> tuple[str, str]:
    """Creates a database with every service's schema at head; returns (name, SQLAlchemy URL).

    A copy (`CREATE DATABASE ... TEMPLATE`) of a template that `reelbatch migrate` built once for
    the current migrations: a copy takes a fraction of a second where `reelbatch migrate` takes
    several seconds of CPU. For stacks that need a migrated database but do not test migrating
    (the migration tests and embedded mode still migrate on their own).
    """
    global _template
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    for attempt in range(2):
        if _template is None:
            _template = _ensure_template()
        try:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(_template)
                    )
                )
            break
        except psycopg.errors.InvalidCatalogName:
            # The template was dropped meanwhile (by hand, or as stale by another session).
            _template = None
            if attempt:
                raise
    _log_sequences(name)
    return name, _url_of(name)


# Every sequence that has handed out values, written again with setval (which WAL-logs).
_RELOG_SEQUENCES = """
DO $$
DECLARE s record;
BEGIN
    FOR s IN SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE last_value IS NOT NULL
    LOOP
        PERFORM setval(format('%I.%I', s.schemaname, s.sequencename), s.last_value, true);
    END LOOP;
END $$"""


def _log_sequences(name: str) -> None:
    """Makes the copy's sequences crash-safe. A sequence WAL-logs a value 32 ahead and hands out
    the next ones unlogged; the copy's sequence pages arrive in a fresh WAL record, so nothing
    forces a new log before those unlogged values go out, and after a crash (the chaos tests stop
    PostgreSQL with -m immediate) the sequence went back and handed out ids already used."""
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_RELOG_SEQUENCES)


def schema_fingerprint() -> str:
    """A hash of everything that decides the migrated schema (migration files, runner, versions)."""
    digest = hashlib.sha256()
    sources = sorted(
        path
        for path in REPO_ROOT.glob("services/*/adapters/migrations/**/*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    for path in [*sources, REPO_ROOT / "libs" / "migrations.py"]:
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("alembic", "sqlalchemy"):
        digest.update(f"{package}=={version(package)}\0".encode())
    return digest.hexdigest()[:16]


def _ensure_template() -> str:
    """The migrated template of the current schema, built first if no session has built it yet.

    Built under an advisory lock (one builder at a time across sessions), by `reelbatch migrate`
    into a temporary database, then closed to connections (a copy fails while the template has
    sessions) and renamed to its final name. Leftovers of interrupted builds and stale templates
    of other migrations are dropped while the lock is held.
    """
    prefix = f"{TEMPLATE_PREFIX}{schema_fingerprint()}_"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            names = [
                str(row[0])
                for row in conn.execute(
                    "SELECT datname FROM pg_database"
                    " WHERE starts_with(datname, %s) OR starts_with(datname, %s)",
                    (TEMPLATE_PREFIX, BUILDING_PREFIX),
                )
            ]
            current = sorted(name for name in names if name.startswith(prefix))
            if current:
                return current[-1]
            now = int(time.time())
            for old in names:
                built = old.rpartition("_")[2]
                # A template name without a build time is of an earlier naming: stale as well.
                if (
                    old.startswith(BUILDING_PREFIX)
                    or not built.isdigit()
                    or now - int(built) > STALE_TEMPLATE_SECONDS
                ):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old))
                    )
            template = f"{prefix}{now}"
            building = f"{BUILDING_PREFIX}{uuid.uuid4().hex[:12]}"
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
            try:
                migrate(_url_of(building))
                conn.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(building))
                )
                # Waits (up to 5 s) for the migrate process's server sessions to end.
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(building), sql.Identifier(template)
                    )
                )
            except BaseException:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building))
                )
                raise
            return template
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))


def migrate(database_url: str) -> None:
    """Brings the database at `database_url` to every service's head with `reelbatch migrate`."""
    env = {
        **os.environ,
        "REELBATCH_ENV": "test",
        "REELBATCH_DATABASE_URL": database_url,
        "REELBATCH_LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "-m", "services.launcher", "migrate"], env=env, cwd=REPO_ROOT, check=True)


@contextmanager
def migrated_database() -> Iterator[str]:
    """A database of the caller's own with every service at head (`create_migrated_database`),
    dropped afterwards: for tests that read whole tables or break money on purpose."""
    name, url = create_migrated_database()
    try:
        yield url
    finally:
        drop_database(name)


@contextmanager
def database_at(script_location: Path, revision: str) -> Iterator[str]:
    """A database of the caller's own with one service's migrations (`script_location`) applied up
    to `revision`, dropped afterwards: for tests of an upgrade over the rows of its time."""
    name, url = create_database()
    try:
        upgrade_to(script_location, url, revision)
        yield url
    finally:
        drop_database(name)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_every_backend(name: str, timeout: float = 10.0) -> int:
    """Ends every connection to database `name` (as a restart or a failover does) and waits until
    they are gone; returns how many it ended."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)), now() FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
        assert row is not None
        ended, terminated_at = int(row[0]), row[1]
        deadline = time.monotonic() + timeout
        # Connections opened since (pools replace theirs at once) are not waited for.
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND backend_start < %s AND pid <> pg_backend_pid()",
            (name, terminated_at),
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise AssertionError(f"connections to {name} still alive after {timeout} s")
            time.sleep(0.01)
    return ended


def create_vhost() -> tuple[str, str]:
    """Creates an empty RabbitMQ vhost for guest; returns (name, AMQP URL)."""
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    return name, f"{AMQP_BASE}/{name}"


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)
