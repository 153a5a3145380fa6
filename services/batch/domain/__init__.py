"""Pure rules of batches and tasks: no I/O, no transport, no settings."""
