"""Billing integration tests (real PostgreSQL and RabbitMQ)."""
