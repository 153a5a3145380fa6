"""Column conventions every service's tables share, declared once (the migrations spell them out)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, func


def created_at_column() -> Column[datetime]:
    """`created_at`: when the row was inserted, timezone-aware and set by the database's clock."""
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())
