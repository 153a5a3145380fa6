"""The BillingService gRPC servicer, its RPCs grouped by topic (one mixin per use-case module)."""
