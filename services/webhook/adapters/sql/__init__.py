"""The webhook schema's SQL, one module per topic, one SQL style per module (said at its top)."""
