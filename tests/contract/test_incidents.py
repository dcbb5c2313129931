"""The incidents contract, on Azurite and on the memory fake: a commit is all or nothing
and guarded by the cursor's ETag, rows are the version index, the outbox keeps events in
version order until dropped, and the cross-tenant list is newest first, filtered and
keyset paged with each incident once."""

from __future__ import annotations

import pytest

from shared.model import Cursor
from shared.storage.errors import StateChanged
from shared.storage.incidents import MAX_PER_COMMIT, Incident, IncidentRepository
from shared.storage.memory.incidents import MemoryIncidents


@pytest.fixture
def repo(backend):
    return backend.paired(IncidentRepository, "Incidents", "IncidentIndex", MemoryIncidents)


def _inc(tenant: str, iid: str, version: str, **fields) -> Incident:
    return Incident(tenant, iid, version, **fields)


V1, V2, V3 = ("2026-12-01T10:00:00.0000000Z", "2026-12-01T11:00:00.0000000Z",
              "2026-12-02T09:30:00.5000000Z")


def test_commit_rows_events_and_cursor_together(repo):
    assert repo.cursor("t1") == (None, None)
    inc = _inc("t1", "42", V1, name="Multi-stage <b>", severity="high", status="active",
               tags=("x",), alert_ids=("da1", "da2"), web_url="https://security.microsoft.com/i")
    etag = repo.commit("t1", [(inc, '{"e":1}')], Cursor(V1, source="graph"), None)
    cursor, now = repo.cursor("t1")
    assert cursor == Cursor(V1, source="graph") and now
    assert repo.get("t1", "42") == inc
    assert repo.stored("t1", ["42", "43"]) == {"42": inc}
    assert repo.outbox("t1") == [(f"o~{V1}~42", '{"e":1}')]
    assert etag
    # a commit against an old ETag (another run moved the cursor) leaves nothing
    with pytest.raises(StateChanged):
        repo.commit("t1", [(_inc("t1", "43", V2), "{}")], Cursor(V2, source="graph"), None)
    repo.commit("t1", [], Cursor(V2, source="graph", link="https://g/next"), now)
    with pytest.raises(StateChanged):
        repo.commit("t1", [(_inc("t1", "43", V2), "{}")], Cursor(V2, source="graph"), now)
    assert repo.get("t1", "43") is None and len(repo.outbox("t1")) == 1
    assert repo.cursor("t1")[0].link == "https://g/next"


def test_open_reads_cursor_and_waiting_events_together(repo):
    empty = repo.open("t1")
    assert (empty.cursor, empty.etag, empty.recent, empty.waiting) == (None, None, {}, 0)
    repo.commit("t1", [(_inc("t1", "1", V1), "a"), (_inc("t1", "2", V2), "b")],
                Cursor(V2, source="graph"), None, recent={"2": V2})
    opening = repo.open("t1")
    assert (opening.cursor, opening.etag) == repo.cursor("t1")
    assert opening.recent == {"2": V2} and opening.waiting == 2
    for row_key, _ in repo.outbox("t1"):
        repo.drop_outbox("t1", row_key)
    assert repo.open("t1").waiting == 0


def test_outbox_in_version_order_and_drop_idempotent(repo):
    repo.commit("t1", [(_inc("t1", "1", V2), "b"), (_inc("t1", "2", V1), "a")],
                Cursor(V2, source="graph"), None)
    etag = repo.cursor("t1")[1]
    repo.commit("t1", [(_inc("t1", "1", V3), "c")], Cursor(V3, source="graph"), etag)
    assert [e for _, e in repo.outbox("t1")] == ["a", "b", "c"]
    assert {k: v.version for k, v in repo.stored("t1", ["1", "2"]).items()} == {
        "1": V3, "2": V1}
    first = repo.outbox("t1")[0][0]
    repo.drop_outbox("t1", first)
    repo.drop_outbox("t1", first)
    assert [e for _, e in repo.outbox("t1")] == ["b", "c"]
    assert repo.outbox("t2") == []


def test_commit_size_and_keys_checked(repo):
    many = [(_inc("t1", str(i), V1), "{}") for i in range(MAX_PER_COMMIT + 1)]
    with pytest.raises(ValueError):
        repo.commit("t1", many, Cursor(V1, source="graph"), None)
    with pytest.raises(ValueError):
        repo.commit("t1", [(_inc("t1", "a/b", V1), "{}")], Cursor(V1, source="graph"), None)
    repo.commit("t1", many[:MAX_PER_COMMIT], Cursor(V1, source="graph"), None)
    assert len(repo.stored("t1", [str(i) for i in range(60)])) == MAX_PER_COMMIT
    assert repo.get("t1", "../x") is None


def test_list_newest_first_filtered_and_paged(repo):
    versions = [f"2026-12-0{1 + i % 3}T0{i % 10}:00:00.{i:07d}Z" for i in range(23)]
    for i, version in enumerate(versions):
        repo.record_listed(_inc(f"t{i % 2}", str(i), version, name=f"n{i}",
                                severity="high" if i % 3 == 0 else "low",
                                status="active"))
    seen, after = [], ""
    while True:
        page = repo.listed(after=after, limit=5)
        seen += page.items
        if not page.after:
            break
        after = page.after
    assert [x.version for x in seen] == sorted(versions, reverse=True)
    assert len({(x.tenant_id, x.incident_id) for x in seen}) == 23
    assert seen[0].name and seen[0].severity in ("high", "low")
    high = repo.listed(severities=("high",), tenants=("t0",), limit=50).items
    assert {x.incident_id for x in high} == {str(i) for i in range(23) if i % 6 == 0}
    # a newer version replaces the older entry; recorded twice, listed once
    newer = _inc("t0", "0", "2026-12-09T00:00:00.0000000Z", name="renamed",
                 severity="high", status="resolved")
    repo.record_listed(newer, replaced=versions[0])
    repo.record_listed(newer, replaced=versions[0])
    top = repo.listed(limit=50).items
    assert top[0].incident_id == "0" and top[0].status == "resolved"
    assert [x.incident_id for x in top].count("0") == 1
    assert repo.listed(statuses=("resolved",)).items == [top[0]]
    with pytest.raises(ValueError):
        repo.listed(after="not a token")


def test_a_chunk_of_huge_incidents_fits_one_commit(repo):
    huge = [_inc("t1", str(i), V1, name="n" * 50_000, assignee="a" * 50_000,
                 tags=tuple("t" * 5_000 for _ in range(100)),
                 alert_ids=tuple(f"ga{j:06d}" for j in range(5_000)))
            for i in range(MAX_PER_COMMIT)]
    repo.commit("t1", [(i, "e" * 20_000) for i in huge], Cursor(V1, source="graph"), None)
    back = repo.get("t1", "0")
    assert back is not None and back.name == "n" * 1_000
    assert 0 < len(back.alert_ids) < 5_000 and back.alert_ids[0] == "ga000000"


def test_store_own_replaces_only_the_version_it_read(repo):
    """The MSSP's own change (triage): row and event in one write, the cursor untouched,
    and only over the version it was read at (a fetch that stored a newer one wins)."""
    tid = "t-own"
    old = _inc(tid, "7", V1, status="active", alert_ids=("da1", "da2"))
    repo.commit(tid, [(old, "new-event")], Cursor(V1, source="graph"), None)
    repo.drop_outbox(tid, f"o~{V1}~7")
    cursor_before = repo.cursor(tid)
    answered = _inc(tid, "7", V2, status="resolved", assignee="Alice",
                    classification="falsePositive", determination="notMalicious",
                    alert_ids=("da1", "da2"))
    assert repo.store_own(answered, '{"own":1}', replaced=V1) is True
    assert repo.get(tid, "7") == answered
    assert repo.outbox(tid) == [(f"o~{V2}~7", '{"own":1}')]
    assert repo.cursor(tid)[0] == cursor_before[0]  # the cursor did not move
    # read at V1 again (a retry, or a stale read): the row is at V2 now, nothing written
    assert repo.store_own(_inc(tid, "7", V3, status="active"), "{}", replaced=V1) is False
    assert repo.get(tid, "7") == answered
    # not newer than what it replaces, or not stored: nothing written
    assert repo.store_own(_inc(tid, "7", V2, status="x"), "{}", replaced=V2) is False
    assert repo.store_own(_inc(tid, "8", V2), "{}", replaced=V1) is False
    assert repo.get(tid, "8") is None and len(repo.outbox(tid)) == 1
