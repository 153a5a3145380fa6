"""The ways in: thin REST routers (request -> gRPC call -> response model, no business rules) and
the hot lane, a routing shortcut in front of them over the same use cases (ADR-029, ADR-035).
"""
