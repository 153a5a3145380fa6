"""Billing adapters: tables, repository (all SQL), event encoding and the batch service client."""
