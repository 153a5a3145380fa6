"""What the gateway talks to: the backend gRPC stubs and where videos are stored."""
