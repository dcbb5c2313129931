"""Alert notifications: rules, matching, digests, rendering, transports (their tables
are behind repositories in shared/storage/)."""
