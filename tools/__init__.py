"""Command-line tools for the MSSP's operations staff (not deployed)."""
