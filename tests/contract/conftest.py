"""One contract suite per repository family, run twice: on Azurite (the real repository)
and on the in-memory fake (`shared/storage/memory/`). A fake that passes here may stand
in for the real thing in service unit tests.

Each contract module builds its repository from `backend`:

    @pytest.fixture
    def tenants(backend):
        return backend.build(lambda storage: TenantRepository(...),
                             lambda: MemoryTenants())
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from azure.data.tables import TableClient

from shared.storage import tables
from shared.storage.connection import StorageConnection

R = TypeVar("R")


@dataclass
class Backend:
    name: str  # "azurite" or "memory"
    storage: StorageConnection | None

    def build(self, real: Callable[[StorageConnection], R], fake: Callable[[], R]) -> R:
        return real(self.storage) if self.storage is not None else fake()

    def repo(self, real: Callable[[TableClient], R], prefix: str, fake: Callable[[], R]) -> R:
        """`real` on a table of this test alone (so listing it sees only what the test
        wrote), or the fake."""
        return self.build(lambda storage: real(fresh_table(storage, prefix)), fake)

    def paired(self, real: Callable[[TableClient, TableClient], R], prefix: str,
               index_prefix: str, fake: Callable[[], R]) -> R:
        """`real` on a table and its index table of this test alone (one suffix), or the
        fake (shared/storage/paired_tables.py)."""
        def both(storage: StorageConnection) -> R:
            suffix = uuid.uuid4().hex[:12]
            return real(tables.table(storage, f"{prefix}{suffix}"),
                        tables.table(storage, f"{index_prefix}{suffix}"))
        return self.build(both, fake)


def fresh_table(storage: StorageConnection, prefix: str) -> TableClient:
    return tables.table(storage, f"{prefix}{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["azurite", "memory"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", None)
    return Backend("azurite", request.getfixturevalue("storage_env"))
