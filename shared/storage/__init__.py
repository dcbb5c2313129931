"""Storage adapters: connections, queues and tables, with Azure's limits enforced here."""
