"""Cross-tenant indicator correlation: the same hash, IP, domain or URL in alerts of several
customers (issue 22). MSSP-only: nothing here is ever shown on a tenant's behalf."""
