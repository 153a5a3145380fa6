"""Storage, billing client, event encoding and video providers of the batch service."""
