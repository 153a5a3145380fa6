"""The batch service: batches of video tasks, their execution by workers, recovery and cancellation."""
