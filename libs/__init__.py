"""Shared plumbing for every Reelbatch service: config, database, bus, outbox, gRPC, telemetry.

Nothing here holds a business rule; services import these pieces and wire them in their own
`bootstrap` module.
"""
