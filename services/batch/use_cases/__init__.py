"""The batch service's use cases, one module per topic, over the SQL topics of `adapters/sql`.

`intake` (create a batch, freeze its credits, queue it), `retries` (retry a batch's failed
tasks), `reads`, `cancel`, `settlement`, `recovery`; the workers' `claims`, `outcomes` and
`execution`. `services/batch/handlers.py` bundles the server's ones for the entrypoints.
"""
