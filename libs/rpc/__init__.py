"""gRPC plumbing: server construction with health and reflection, clients, error translation."""
