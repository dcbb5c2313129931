"""Chunk commits with two in flight: in order, each after its rows, none after a failure.
(The integration tests run them against Azurite; here the order is forced by hand.)"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from shared.ingest import chunk_commits
from shared.ingest.chunk_commits import ChunkCommits
from shared.model import Cursor
from shared.storage.ingest_state import Index


class RecordingState:
    """The one edge faked: IngestState.commit, recorded (and made to fail on demand)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.made: list[str] = []
        self.fail_at = fail_at

    def commit(self, shards, events, cursor, cursor_etag, stamp, recent=None):
        if len(self.made) + 1 == self.fail_at:
            self.made.append(f"failed {stamp}")
            raise ConnectionError(f"commit {stamp} failed")
        self.made.append(stamp)
        return [], f"etag-{stamp}"


def _done() -> Future:
    future: Future = Future()
    future.set_result(None)
    return future


def _snapshot(index: Index, alert_id: str):
    index.put(alert_id, "20260101", ["v"])
    return index.snapshot()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(1) as executor:
        yield executor


def test_commits_wait_for_their_rows_and_keep_the_order(pool):
    state, index = RecordingState(), Index()
    commits = ChunkCommits(pool, state, None, lambda _: None)
    slow_rows: Future = Future()
    commits.submit([slow_rows], _snapshot(index, "a"), [], Cursor("t1", 0), "1")
    commits.submit([_done()], _snapshot(index, "b"), [], Cursor("t2", 0), "2")
    assert state.made == []  # chunk 2's rows are in, but chunk 1's commit comes first
    third = threading.Thread(target=commits.submit, args=(
        [_done()], _snapshot(index, "c"), [], Cursor("t3", 0), "3"))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # two commits in flight: the third waits for the first
    slow_rows.set_result(None)
    third.join(5)
    commits.finish()
    assert state.made == ["1", "2", "3"] and commits.etag == "etag-3"
    assert all(shard.pending == 0 for shard in index.shards.values())


def test_no_commit_after_a_failed_one_and_the_first_error_is_raised(pool, monkeypatch):
    monkeypatch.setattr(chunk_commits, "IN_FLIGHT", 3)
    state, index = RecordingState(fail_at=1), Index()
    commits = ChunkCommits(pool, state, None, lambda _: None)
    held: Future = Future()
    commits.submit([held], _snapshot(index, "a"), [], Cursor("t1", 0), "1")
    commits.submit([_done()], _snapshot(index, "b"), [], Cursor("t2", 0), "2")
    commits.submit([_done()], _snapshot(index, "c"), [], Cursor("t3", 0), "3")
    held.set_result(None)
    with pytest.raises(ConnectionError, match="commit 1 failed"):
        commits.finish()
    assert state.made == ["failed 1"]  # 2 and 3 were queued, and not made
    assert all(shard.pending == 0 for shard in index.shards.values())


def test_a_failed_row_write_fails_its_commit_after_every_row_has_ended(pool):
    state, index = RecordingState(), Index()
    commits = ChunkCommits(pool, state, None, lambda _: None)
    failed: Future = Future()
    failed.set_exception(ConnectionError("rows refused"))
    still_writing: Future = Future()
    commits.submit([failed, still_writing], _snapshot(index, "a"), [], Cursor("t1", 0), "1")
    raised: list[BaseException] = []

    def finish() -> None:
        try:
            commits.finish()
        except BaseException as exc:  # checked below, on the test's thread
            raised.append(exc)

    finisher = threading.Thread(target=finish)
    finisher.start()
    finisher.join(0.2)
    assert finisher.is_alive()  # the run does not end while a row write is still going
    still_writing.set_result(None)
    finisher.join(5)
    assert not finisher.is_alive() and state.made == []
    assert [str(exc) for exc in raised] == ["rows refused"]
