"""The webhook service's use cases, one module per topic, each use case a function taking its
dependencies. `handlers.WebhookHandlers` binds them to one service's dependencies."""
