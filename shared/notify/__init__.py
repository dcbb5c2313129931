"""Alert notifications: rules, matching, the exactly-once ledger, rendering, transports."""
