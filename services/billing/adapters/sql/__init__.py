"""Billing SQL, one topic per module, each in one style (SQLAlchemy Core or named query strings)."""
