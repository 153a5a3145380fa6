"""The history database, built once and kept as a PostgreSQL template; each run clones it.

A template is named `rb_hist_<schema fingerprint>_<hash of generator version and shape>`: the
schema fingerprint (`tests.isolation.schema_fingerprint`) changes with any migration, so a
template always has the current migrations' schema. Built under an advisory lock into a copy of
the migrated test template, checked (I1-I3, set-based: `history_checks`), vacuumed and analyzed
(this machine's PostgreSQL runs without autovacuum; production's would have done both), then
renamed: a template under its final name is a finished one. What the generator made (the
benchmark's tenant and batch) is stored as the database's comment.

After a migration change, a template of the same generator and shape built for earlier migrations
is upgraded rather than generated again: a clone of it is brought to head by `reelbatch migrate`
(as production's history is: its months are migrated, never regenerated), checked and kept under
the new name, in minutes where a build takes half an hour. Templates of other migrations stay
(another checkout, a branch, may still use them) until the disk runs short: then the oldest go first.

A clone is `CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY`: a file copy of the template,
seconds for gigabytes, where PostgreSQL 15's default (WAL_LOG) writes every page through the WAL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
import zlib
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg import sql

from bench.history_checks import money_discrepancies
from bench.history_data import GENERATOR_VERSION, Generated, Shape, generate
from tests.isolation import ADMIN_DSN, create_migrated_database, migrate, schema_fingerprint
from tests.ledger_summaries import summary_differences

PREFIX = "rb_hist_"
# Bytes on disk per task of history, measured (tasks, their ledger, indexes, the rest): the free
# space a build needs is twice this (template and one clone) times the tasks, with a margin.
BYTES_PER_TASK = 2_400


def template_name(shape: Shape) -> str:
    """The cached template's name for the current migrations, generator and `shape`."""
    key = hashlib.sha256(f"{GENERATOR_VERSION}:{shape}".encode()).hexdigest()[:8]
    return f"{PREFIX}{schema_fingerprint()}_{key}"


def _url(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"


def _dsn(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


def free_bytes(conn: psycopg.Connection[Any]) -> int:
    """Free space where PostgreSQL keeps its data (the root filesystem when that is not readable)."""
    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    path = str(row[0]) if row else "/"
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return shutil.disk_usage("/").free


def ensure_template(shape: Shape, *, log: bool = True) -> tuple[str, Generated, float | None]:
    """The template of `shape` (built now if missing): its name, what it holds, and the seconds
    the build took (None: it was cached)."""
    name = template_name(shape)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        # One builder per template (a build of another size goes on meanwhile).
        lock = zlib.crc32(f"reelbatch-history-{name}".encode())
        conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
        try:
            found = _described(conn, name)
            if found is not None:
                return name, found, None
            upgraded = _upgraded(conn, name, log=log)
            if upgraded is not None:
                return name, upgraded, upgraded.seconds
            _make_room(conn, 2 * BYTES_PER_TASK * shape.tasks + 2 * 2**30, shape)
            started = time.perf_counter()
            building, url = create_migrated_database()
            try:
                if log:
                    print(f"  history: building {name} ({shape.tasks:,} tasks) in {building}")
                generated = generate(url.replace("postgresql+psycopg://", "postgresql://"), shape, log=log)
                _check_and_vacuum(building)
                generated.seconds = time.perf_counter() - started
                _keep_as(conn, building, name, generated)
            except BaseException:
                _drop(conn, building)
                raise
            return name, generated, generated.seconds
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))


def _upgraded(conn: psycopg.Connection[Any], name: str, *, log: bool) -> Generated | None:
    """`name` made from a template of the same generator and shape of earlier migrations (a clone
    migrated to head and checked), or None when there is none or none migrates."""
    key = name.rsplit("_", 1)[1]
    for (older,) in conn.execute(
        "SELECT datname FROM pg_database"
        " WHERE starts_with(datname, %s) AND datname LIKE %s AND datname <> %s ORDER BY oid DESC",
        (PREFIX, f"%\\_{key}", name),
    ).fetchall():
        described = _described(conn, older)
        if described is None:
            continue
        started = time.perf_counter()
        building = f"rb_test_{uuid.uuid4().hex[:12]}"
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(building), sql.Identifier(older)
            )
        )
        try:
            if log:
                print(f"  history: upgrading {older} to {name} in {building}")
            migrate(_url(building))
            _check_and_vacuum(building)
            described.seconds = time.perf_counter() - started
            _keep_as(conn, building, name, described)
        except subprocess.CalledProcessError:
            # Migrations this checkout does not know (a template of another branch): not an ancestor.
            _drop(conn, building)
            if log:
                print(f"  history: {older} passed over (the migrate error above: another branch's history)")
            continue
        except BaseException:
            _drop(conn, building)
            raise
        return described
    return None


def _check_and_vacuum(building: str) -> None:
    """Checks I1-I3 and the monthly summaries of the database `building`, then vacuums and analyzes
    it."""
    problems = money_discrepancies(_dsn(building))
    with psycopg.connect(_dsn(building)) as target:
        problems += [f"summary {table} differs from the ledger" for table in summary_differences(target)]
    if problems:
        raise AssertionError("the history breaks I1-I3:\n" + "\n".join(problems[:20]))
    with psycopg.connect(_dsn(building), autocommit=True) as target:
        target.execute("VACUUM (ANALYZE)")


def _keep_as(conn: psycopg.Connection[Any], building: str, name: str, generated: Generated) -> None:
    """Stores what `generated` holds as the comment of `building`, closes it to connections and
    renames it `name`: from then on a finished template."""
    comment = json.dumps({**asdict(generated), "tenant_id": str(generated.tenant_id),
                          "big_batch_id": str(generated.big_batch_id)})  # fmt: skip
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(building), sql.Literal(comment))
    )
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(building)))
    conn.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
    )


def _drop(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _described(conn: psycopg.Connection[Any], name: str) -> Generated | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    if row is None or not row[0]:
        return None
    stored = json.loads(row[0])
    return Generated(
        tenant_id=uuid.UUID(stored["tenant_id"]),
        big_batch_id=uuid.UUID(stored["big_batch_id"]),
        big_batch_items=int(stored["big_batch_items"]),
        months=list(stored["months"]),
        counts=dict(stored["counts"]),
        seconds=float(stored["seconds"]),
    )


def _make_room(conn: psycopg.Connection[Any], needed: int, shape: Shape) -> None:
    """Drops history templates of other migrations, the oldest first, until `needed` bytes are
    free; raises when even that is not enough."""
    current = template_name(shape).rsplit("_", 1)[0] + "_"
    others = conn.execute(
        "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND NOT starts_with(datname, %s)"
        " ORDER BY oid",
        (PREFIX, current),
    ).fetchall()
    for (other,) in others:
        if free_bytes(conn) >= needed:
            return
        _drop(conn, other)
    free = free_bytes(conn)
    if free < needed:
        raise RuntimeError(
            f"the history database of {shape.tasks:,} tasks needs about {needed / 2**30:.0f} GiB"
            f" free (template and clone); {free / 2**30:.0f} GiB are"
        )


def clone(template: str) -> tuple[str, str]:
    """A new database copied from `template`; (name, SQLAlchemy URL)."""
    name = f"rb_histrun_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name, _url(name)
