"""Transports of the webhook service: gRPC servicer, event consumer, deliverer loop, process main."""
