"""The customer console: tenant-scoped pages under /console for a tenant's people (owner,
developer, finance), signed in with email and password. Every route is declared once in
`route_table`; `router` serves exactly those, each behind its guard.

Route modules here do not use `from __future__ import annotations`: FastAPI must resolve the
annotations of endpoints defined inside the router factories, which refer to local dependencies.
"""
