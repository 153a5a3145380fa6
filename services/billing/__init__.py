"""Billing: tenants, API keys, pricing and the double-entry credit ledger (gRPC server + event consumer)."""
