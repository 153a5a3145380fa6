"""The history benchmark's cached template (bench/history_template.py): built once per migrations,
generator and shape; after a migration change the template of earlier migrations is upgraded
(cloned, migrated, checked) instead of generated again, and the older one stays for the checkouts
that still use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from bench import history_template
from bench.history_data import Shape
from tests.isolation import ADMIN_DSN, drop_database

# A shape of its own (no other run builds it): a few tenants, a handful of batches.
TINY = Shape(tenants=3, batches=7, tasks=61, months=2, seed=7)
OTHER_MIGRATIONS = "0123456789abcdef"


def _databases(prefix: str) -> set[str]:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        return {str(row[0]) for row in rows}


@pytest.fixture
def templates() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        drop_database(name)


def test_a_template_of_earlier_migrations_is_upgraded_not_generated_again(
    templates: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The template as the earlier migrations' checkout built it.
    monkeypatch.setattr(history_template, "schema_fingerprint", lambda: OTHER_MIGRATIONS)
    older, built, seconds = history_template.ensure_template(TINY)
    templates.append(older)
    assert older.startswith(f"rb_hist_{OTHER_MIGRATIONS}_") and seconds is not None
    assert "building" in capsys.readouterr().out
    monkeypatch.undo()

    current, upgraded, upgrade_seconds = history_template.ensure_template(TINY)
    templates.append(current)

    assert current == history_template.template_name(TINY) != older
    assert f"upgrading {older} to {current}" in capsys.readouterr().out
    assert upgrade_seconds is not None
    # The same history: what the benchmark reads from it comes along.
    assert (upgraded.tenant_id, upgraded.big_batch_id, upgraded.counts) == (
        built.tenant_id,
        built.big_batch_id,
        built.counts,
    )
    assert {older, current} <= _databases("rb_hist_")
    # Cached from now on; a clone of it is at the current head and holds the history.
    assert history_template.ensure_template(TINY)[2] is None
    clone_name, _ = history_template.clone(current)
    try:
        with psycopg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{clone_name}") as conn:
            counted: Any = conn.execute("SELECT count(*) FROM batch.tasks").fetchone()
            assert counted[0] == TINY.tasks
            heads = {str(row[0]) for row in conn.execute("SELECT version_num FROM billing.alembic_version")}
            assert len(heads) == 1
    finally:
        drop_database(clone_name)
