"""Billing's use cases, one module per topic, each use case a function taking its dependencies.

`handlers.BillingHandlers` binds them to one service's dependencies for the transports.
"""
