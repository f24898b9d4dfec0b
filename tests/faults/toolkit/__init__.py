"""The fault toolkit: agent processes, broker inspection, misbehaving HTTP endpoints, the ledger."""
