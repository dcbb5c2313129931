"""Development tools that are never deployed (the simulator)."""
