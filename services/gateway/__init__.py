"""The HTTP gateway: the public REST API (FastAPI + uvicorn) in front of billing and batch (gRPC).

It authenticates callers, validates and bounds requests, translates REST to gRPC calls and gRPC
failures to HTTP errors. It holds no data and no money rules of its own.
"""
