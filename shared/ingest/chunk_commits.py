"""A run's chunk commits, in order, each once its rows are stored, on one thread beside
the worker.

Why: waiting for a chunk's rows and then for its commit left the worker idle for a fifth
of a run while Azurite worked; now it parses and builds the next chunks meanwhile. What
exactly-once needs is kept: a chunk's index, outbox and cursor are committed only after
all of its rows are stored, and commits go one at a time in chunk order (each with the
ETags the one before returned). Once a commit fails, no later one is made: the run stops
at its next chunk with nothing after the failure committed. At most IN_FLIGHT commits are
pending, which bounds what a run holds (their rows and events) to that many chunks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from shared.model import Cursor
from shared.storage.ingest_state import IndexEntry, IngestState, Snapshot

IN_FLIGHT = 2  # with one, the worker waited on storage for ~0.2 s of a 5,000-alert run


class EarlierCommitFailed(RuntimeError):
    """A chunk's commit not made, because one before it failed (that one's error is
    the run's)."""


class ChunkCommits:
    def __init__(self, pool: ThreadPoolExecutor, state: IngestState,
                 cursor_etag: str | None, committed: Callable[[list[str]], None]) -> None:
        """`pool`: one thread; `committed(outbox row keys)` runs after each commit that
        wrote an outbox."""
        self.pool, self.state, self.etag, self.committed = pool, state, cursor_etag, committed
        self.pending: deque[tuple[Future[None], Snapshot]] = deque()
        self.failed = False  # set on the commit thread, read there only

    def submit(self, rows: list[Future[Any]], shards: Snapshot, events: list[bytes],
               cursor: Cursor, stamp: str, recent: dict[str, IndexEntry] | None = None
               ) -> None:
        """Commit a chunk once `rows` (its row transactions) are done. Waits while
        IN_FLIGHT commits are pending, and raises what the oldest of them raised."""
        while len(self.pending) >= IN_FLIGHT:
            self._settle(self.pending.popleft())
        self.pending.append((self.pool.submit(self._commit, rows, shards, events, cursor,
                                              stamp, recent), shards))
        self.reap()

    def reap(self) -> None:
        """Settle the commits that are done (raising what the first of them raised): their
        index shards stop counting as pending, so the index may forget their days."""
        while self.pending and self.pending[0][0].done():
            self._settle(self.pending.popleft())

    def finish(self) -> None:
        """Wait for every pending commit; raises what the first of them raised."""
        pending, self.pending = self.pending, deque()
        wait([future for future, _ in pending])
        errors = []
        for item in pending:
            try:
                self._settle(item)
            except EarlierCommitFailed:
                pass  # the failure before it is raised (here, or where it was settled)
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    @staticmethod
    def _settle(item: tuple[Future[None], Snapshot]) -> None:
        future, shards = item
        try:
            future.result()
        finally:
            for shard, _ in shards:  # on this (the worker's) thread: no count is lost
                shard.pending -= 1

    def _commit(self, rows: list[Future[Any]], shards: Snapshot, events: list[bytes],
                cursor: Cursor, stamp: str, recent: dict[str, IndexEntry] | None) -> None:
        wait(rows)  # no write of the run goes on after its commits are settled
        if self.failed:
            raise EarlierCommitFailed("an earlier chunk's commit failed")
        try:
            for future in rows:
                future.result()
            outbox, self.etag = self.state.commit(shards, events, cursor, self.etag, stamp,
                                                  recent)
        except BaseException:
            self.failed = True
            raise
        if outbox:
            self.committed(outbox)
