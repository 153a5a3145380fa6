"""The ways in: thin REST routers (request -> gRPC call -> response model, no business rules).
FastAPI answers every request (ADR-065 removed the hot lane that answered some in front of it).
"""
