"""The correlation store's contract, on Azurite and on the memory fake: a sighting, its
reach, the head and an event are one transaction (a sighting counted once, the head
guarded by its ETag), sightings read newest first from one partition with a time bound
and keyset pages, events kept per version, the cluster index paged in both orders, and
suppressions idempotent with an audit of their removal."""

from __future__ import annotations

import pytest

from shared.correlation.model import (
    DOMAIN,
    SHA256,
    URL,
    Indicator,
    Sighting,
    Suppression,
    TenantReach,
)
from shared.storage.correlation import (
    RECENT,
    WIDEST,
    CorrelationStore,
    Head,
    IndexEntry,
    index_keys,
)
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.memory.correlation import MemoryCorrelation

T1, T2, T3 = ("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
              "33333333-3333-3333-3333-333333333333")
HASH = Indicator(SHA256, "a" * 64)


@pytest.fixture
def store(backend):
    return backend.paired(CorrelationStore, "Corr", "CorrIdx", MemoryCorrelation)


def _seen(tenant: str, alert: str, at: str, indicator: Indicator = HASH) -> Sighting:
    return Sighting(indicator, tenant, f"name {tenant[:2]}", alert, at, "High",
                    "<script>title</script>", "Microsoft Defender for Endpoint")


def _reach(tenant: str, at: str, alerts: list[str]) -> TenantReach:
    return TenantReach(tenant, f"name {tenant[:2]}", at, at, alerts, len(alerts), "High")


def test_one_transaction_sighting_counted_once_head_guarded(store):
    assert store.state(HASH).head is None
    s = _seen(T1, "da1/x?#", "2026-12-01T10:00:00.0000000Z")
    head = Head(HASH, reach=1, first_seen=s.seen_at, last_seen=s.seen_at, alert_count=1)
    etag = store.record(s, _reach(T1, s.seen_at, ["da1/x?#"]), head, None)
    state = store.state(HASH)
    assert state.head == head and state.etag == etag
    assert state.reaches[T1].alert_ids == ["da1/x?#"]
    # the same sighting again (a redelivery, another version): nothing written
    head2 = Head(HASH, reach=1, alert_count=2)
    with pytest.raises(AlreadyExists):
        store.record(s, _reach(T1, s.seen_at, ["x", "y"]), head2, etag)
    with pytest.raises(AlreadyExists):  # written blind (as if new): the sighting decides
        store.record(s, _reach(T1, s.seen_at, ["x", "y"]), head2, None)
    assert store.state(HASH).head.alert_count == 1
    assert store.state(HASH).reaches[T1].alert_count == 1
    # a second worker that read the head before: refused, its sighting not written
    s2 = _seen(T2, "da2", "2026-12-01T11:00:00.0000000Z")
    with pytest.raises(StateChanged):
        store.record(s2, _reach(T2, s2.seen_at, ["da2"]), head2, None)
    with pytest.raises(StateChanged):
        store.record(s2, _reach(T2, s2.seen_at, ["da2"]), head2, 'W/"old"')
    assert set(store.state(HASH).reaches) == {T1}
    assert store.sightings(HASH)[0] == [s]


def test_events_per_version_and_publishing_marked(store):
    s = _seen(T1, "da1", "2026-12-01T10:00:00.0000000Z")
    head = Head(HASH, version=1, members=[T1, T2], reach=2, last_seen=s.seen_at)
    etag = store.record(s, _reach(T1, s.seen_at, ["da1"]), head, None, (1, '{"e":1}'))
    s2 = _seen(T3, "da3", "2026-12-01T11:00:00.0000000Z")
    head.version, head.members = 2, [T1, T2, T3]
    long_event = '{"e":"' + "x" * 70_000 + '"}'  # over two string properties
    etag = store.record(s2, _reach(T3, s2.seen_at, ["da3"]), head, etag, (2, long_event))
    assert store.events(HASH, 0) == [(1, '{"e":1}'), (2, long_event)]
    assert store.events(HASH, 1) == [(2, long_event)]
    head.published, head.listed = 2, index_keys(head)
    etag2 = store.mark_published(head, etag)
    assert store.state(HASH).head == head and etag2 != etag
    with pytest.raises(StateChanged):
        store.mark_published(head, etag)


def test_sightings_newest_first_since_and_paged(store):
    etag = None
    times = [f"2026-12-0{d}T10:00:00.0000000Z" for d in range(1, 6)]
    for n, at in enumerate(times):
        tenant = (T1, T2, T3)[n % 3]
        head = Head(HASH, alert_count=n + 1, last_seen=at)
        etag = store.record(_seen(tenant, f"da{n}", at), _reach(tenant, at, [f"da{n}"]),
                            head, etag)
    other = Indicator(DOMAIN, "evil.example")
    store.record(_seen(T1, "zz", times[0], other), _reach(T1, times[0], ["zz"]),
                 Head(other), None)
    found, cursor = store.sightings(HASH)
    assert [s.alert_id for s in found] == ["da4", "da3", "da2", "da1", "da0"]
    assert cursor is None
    assert [s.alert_id for s in store.sightings(HASH, since=times[3])[0]] == ["da4", "da3"]
    page, cursor = store.sightings(HASH, limit=2)
    assert [s.alert_id for s in page] == ["da4", "da3"] and cursor
    page, cursor = store.sightings(HASH, after=cursor, limit=2)
    assert [s.alert_id for s in page] == ["da2", "da1"]
    page, cursor = store.sightings(HASH, after=cursor, limit=2)
    assert [s.alert_id for s in page] == ["da0"] and cursor is None
    with pytest.raises(ValueError):
        store.sightings(HASH, after="'; drop")


def test_cluster_index_both_orders_keyset_paged(store):
    heads = []
    for n in range(5):
        ind = Indicator(URL, f"http://evil{n}.example/<script>")
        head = Head(ind, version=1, reach=2 + n % 3, alert_count=n,
                    last_seen=f"2026-12-0{n + 1}T10:00:00.0000000Z", severities={"High": n})
        tenants = [_reach(T1, head.last_seen, []), _reach(T2, head.last_seen, [])]
        store.put_listed(IndexEntry(p, rk, head, tenants) for p, rk in index_keys(head))
        heads.append(head)
    page, cursor = store.listed(RECENT, None, 3)
    assert [h.indicator for h, _ in page] == [h.indicator for h in heads[::-1][:3]]
    assert page[0][0].severities == {"High": 4} and page[0][1][1].tenant_id == T2
    rest, end = store.listed(RECENT, cursor, 3)
    assert [h.indicator for h, _ in rest] == [heads[1].indicator, heads[0].indicator]
    assert end is None
    wide, _ = store.listed(WIDEST, None, 10)
    assert [h.indicator.value[11] for h, _ in wide] == ["2", "4", "1", "3", "0"]
    store.drop_listed(index_keys(heads[4]))
    store.drop_listed(index_keys(heads[4]))  # gone already: no error
    assert len(store.listed(RECENT, None, 10)[0]) == 4
    with pytest.raises(ValueError):
        store.listed(RECENT, "nope", 10)
    with pytest.raises(ValueError):
        store.listed("other", None, 10)


def test_suppressions_idempotent_and_removal_audited(store):
    first = Suppression(HASH, "our EDR tool", "ann@mssp.example", "2026-12-01T10:00:00Z")
    assert store.suppress(first) == first
    again = Suppression(HASH, "other", "bob@mssp.example", "2026-12-02T10:00:00Z")
    assert store.suppress(again) == first
    assert store.suppressions() == [first]
    assert store.unsuppress(HASH, "bob@mssp.example", "2026-12-03T10:00:00Z") is True
    assert store.unsuppress(HASH, "bob@mssp.example", "2026-12-03T10:00:01Z") is False
    assert store.suppressions() == []
    assert store.removals() == [{
        "indicator": f"sha256:{'a' * 64}", "reason": "our EDR tool",
        "author": "ann@mssp.example", "created": "2026-12-01T10:00:00Z",
        "removed_by": "bob@mssp.example", "removed": "2026-12-03T10:00:00Z"}]
