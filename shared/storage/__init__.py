"""Storage: every table behind a repository (names declared once in tables.py), the
connections, the lean $batch and queue writers, Azure's limits; memory/ the fakes."""
