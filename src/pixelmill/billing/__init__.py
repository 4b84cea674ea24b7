"""Money: what tasks cost, the per-key balance and its append-only ledger, usage reports."""
