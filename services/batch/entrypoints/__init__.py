"""Transports of the batch service: gRPC server, bus consumers, process mains."""
