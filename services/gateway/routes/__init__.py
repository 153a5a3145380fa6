"""Thin REST routers: request -> gRPC call -> response model, no business rules."""
