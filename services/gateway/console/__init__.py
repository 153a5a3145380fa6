"""The customer console: tenant-scoped pages under /console for a tenant's people (owner,
developer, finance), signed in with email and password. Every route is declared once in
`route_table`; `router` serves exactly those, each behind its guard."""
