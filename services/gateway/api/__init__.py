"""The ways in: thin REST routers (request -> gRPC call -> response model, no business rules).
FastAPI answers every request (ADR-065 removed the hot lane that answered some in front of it).

Route modules here do not use `from __future__ import annotations`: FastAPI must resolve the
annotations of endpoints defined inside the router factories, which refer to local dependencies.
"""
