"""The batch service's SQL, one module per topic, each in one SQL style (said at its top).

Write side: `intake` (batches and their tasks stored, the retry slot, re-pricing), `queueing`
(reserving -> queued, dispatch windows), `reservations` (quoted lines, rejection), `claims`
(claims, leases, provider slots, outcomes), `cancel`, `finishing` (the finish check),
`recovery` (sweeps after crashes and outages), `settlement`. Read model: `reads` (the polled
hot reads) and `listings` (filtered lists and reports). `store` bundles them for the use cases.
"""
