"""Brings every service's database schema to its latest migration."""

from __future__ import annotations

import importlib

from libs.config import Settings
from services.launcher.registry import SERVICES


def migrate(settings: Settings) -> None:
    """Creates the database if needed, then applies every service's migrations."""
    from libs.migrations import ensure_database

    ensure_database(settings.database_url)
    for kind in SERVICES.values():
        if kind.migrates:
            importlib.import_module(f"services.{kind.name}.bootstrap").migrate(settings.database_url)
