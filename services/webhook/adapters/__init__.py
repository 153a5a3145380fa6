"""Persistence, DNS, HTTP and gRPC adapters of the webhook service."""
