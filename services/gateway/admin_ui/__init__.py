"""The admin dashboard: server-rendered HTML pages, their session sign-in and static assets.

Route modules here do not use `from __future__ import annotations`: FastAPI must resolve the
annotations of endpoints defined inside the router factories, which refer to local dependencies.
"""
