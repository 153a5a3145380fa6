"""The use cases behind the routes: create and read batches, decide video access, operator reads."""
