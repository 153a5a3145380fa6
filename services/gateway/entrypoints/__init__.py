"""Process entry points of the gateway."""
