"""A durable message bus in PostgreSQL: the `Bus` protocol on tables of the schema `bus`.

Embedded mode runs without RabbitMQ, yet the outbox relay deletes its rows once an event is
"published": so publishing must be durable, or a `kill -9` would lose events. Here a publish is
a committed row per (message, bound queue), exactly like a persistent message in a durable queue:

- `bus.queues` holds every queue and the routing keys bound to it (the whole `TOPOLOGY` at
  connect, plus whatever queue a consumer declares); publish fans a message out to every queue with
  a matching key (topic semantics), and drops it when none matches, as an exchange would.
- Consumers claim visible messages with `FOR UPDATE SKIP LOCKED` (competing consumers), which
  hides them for a visibility timeout that a heartbeat keeps extending while they are in hand, so
  a message comes back only when its consumer died or let go of it; ack deletes the row. A claim
  also records the claiming bus's session: once that session is gone (its process died, as with
  RabbitMQ's unacked messages of a closed channel) the message is claimable at once.
- A delivery counter plays the quorum queue's delivery limit; past it, or when undecodable, a
  message moves to the queue's dead-letter queue.
- Publish sends NOTIFY, so consumers wake at once; a short poll covers lost notifications and
  expired visibility timeouts.

The chunking, decoding and failure handling are `libs.messaging.consuming.ChunkedConsumer`, shared
with RabbitMQ.

The bus is `bus.PostgresBus`; its tables and named SQL are in `schema`.
"""
