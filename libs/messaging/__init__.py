"""Messaging: the bus contract, the consuming loop, its two transports and the outbox.

- `contract`: the `Bus` protocol, `Envelope`, `Delivery`, the queues (`TOPOLOGY`) and topic matching.
- `consuming`: `ChunkedConsumer`, the consume/ack/requeue/dead-letter loop both transports share.
- `rabbit`: the bus on RabbitMQ (aio-pika). `postgres`: the bus on PostgreSQL (embedded mode).
- `transport`: `connect_bus`, which picks the transport the settings name.
- `outbox`: the transactional outbox each service writes events to, and its relay to the bus.

Layers (import-linter): transport > rabbit | postgres | outbox > consuming > contract.
"""
