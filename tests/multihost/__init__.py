"""A harness that runs Reelbatch on several hosts of this machine (network namespaces, as root):
the network (`network`), the forwarders to the machine's PostgreSQL and RabbitMQ (`forwarder`),
the processes on their hosts (`cluster`), the customers' load (`load`) and the provider call logs
(`provider_calls`). docs/operations.md ("Several hosts on one machine") describes it."""
