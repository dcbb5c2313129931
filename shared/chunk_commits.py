"""A run's chunk commits, in order, each once its rows are stored, on one thread beside
the worker.

Why: waiting for a chunk's rows and then for its commit left the worker idle for a fifth
of a run while Azurite worked; now it parses and builds the next chunk meanwhile. What
exactly-once needs is kept: a chunk's index, outbox and cursor are committed only after
all of its rows are stored, commits go one at a time in chunk order (each with the ETags
the one before returned), and at most one is pending, so a failed commit stops the run
at its next chunk with nothing after it committed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shared.model import Cursor
from shared.storage.ingest_state import IngestState, Snapshot


class ChunkCommits:
    def __init__(self, pool: ThreadPoolExecutor, state: IngestState,
                 cursor_etag: str | None, committed: Callable[[list[str]], None]) -> None:
        """`pool`: one thread; `committed(outbox row keys)` runs after each commit that
        wrote an outbox."""
        self.pool, self.state, self.etag, self.committed = pool, state, cursor_etag, committed
        self.pending: Future[None] | None = None

    def submit(self, rows: list[Future[Any]], shards: Snapshot, events: list[bytes],
               cursor: Cursor, stamp: str) -> None:
        """Commit a chunk once `rows` (its row transactions) are done. Waits for the
        commit before it first, and raises what that one raised."""
        self.finish()
        self.pending = self.pool.submit(self._commit, rows, shards, events, cursor, stamp)

    def finish(self) -> None:
        """Wait for the pending commit; raises what it raised."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def _commit(self, rows: list[Future[Any]], shards: Snapshot, events: list[bytes],
                cursor: Cursor, stamp: str) -> None:
        for future in rows:
            future.result()
        outbox, self.etag = self.state.commit(shards, events, cursor, self.etag, stamp)
        if outbox:
            self.committed(outbox)
