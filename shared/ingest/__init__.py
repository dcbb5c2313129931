"""Fetch and store: the fan-out, the fetch worker, its exactly-once commits, the relay of events."""
