"""Pure billing rules: ledger postings, pricing, settlement. No I/O, no transport, no settings."""
