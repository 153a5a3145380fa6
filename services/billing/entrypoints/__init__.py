"""Billing entrypoints: gRPC servicer, bus consumer and the process main."""
