"""The SIEM repositories' contract, on Azurite and on the in-memory fakes: the feed's
ledger stamps an event once and an append is written once; entries are read in stamp order,
filtered, paged, and kept back until settled; pruning goes through a point and resumes
from it; an output's delivery row is created once, its ETag-guarded changes lose to a
concurrent one; the deliver queue carries typed requests; and the stored alert a feed
entry copies."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent, DeliverRequest
from shared.siem.delivery import output_status
from shared.siem.feed import Feed, Filters, Position, bucket_of
from shared.siem.outputs import Output
from shared.storage import tables
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository
from shared.storage.memory.ingest import MemoryAlerts
from shared.storage.memory.siem import MemoryDeliverQueue, MemorySiemDelivery, MemorySiemFeed
from shared.storage.siem_delivery import DeliverQueue, SiemDeliveryRepository, StateChanged
from shared.storage.siem_feed import SiemFeedRepository, entry_key
from tests.alert_docs import graph_alert, office_alert

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()
SETTLE = 5


class Clock:
    def __init__(self, at: float = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at



@pytest.fixture
def entries(backend):
    return backend.repo(SiemFeedRepository, "Feed", MemorySiemFeed)


@pytest.fixture
def alerts(backend):
    return backend.repo(AlertRepository, "Alerts", MemoryAlerts)


@pytest.fixture
def states(backend):
    return backend.repo(SiemDeliveryRepository, "Deliv", MemorySiemDelivery)


@pytest.fixture
def queue(backend):
    return backend.build(
        lambda s: DeliverQueue(tables.queue(s, f"deliver-{uuid.uuid4().hex[:12]}")),
        MemoryDeliverQueue)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def feed(entries, alerts, clock):
    return Feed(entries, alerts, SETTLE, 7, clock)


def _event(tenant: str = "", n: int = 1, version: str = "2026-11-30T10:00:00.0000000Z",
           **alert) -> AlertEvent:
    tenant = tenant or str(uuid.uuid4())
    alert_id = alert.pop("id", f"da{n:06d}")
    body = {"id": alert_id, "title": f"Alert {n}", "severity": "Medium", "status": "New",
            "lastUpdateTime": version, **alert}
    return AlertEvent(tenant, "Tenant", alert_id, version, "new", {}, body)


def _all(feed: Feed, filters: Filters | None = None, limit: int = 100) -> list[dict]:
    position, seen = feed.start(), []
    while True:
        page = feed.read(position, limit, filters or Filters())
        seen += page.events
        position = page.position
        if not page.more:
            return seen


def _store_alert(alerts, tenant: str, alert: dict) -> None:
    alerts.store(alert_rows(tenant, alert))


def _requested(queue) -> list[str]:
    if isinstance(queue, MemoryDeliverQueue):
        return queue.requested
    return [DeliverRequest.parse(m.content).output
            for m in queue.client.receive_messages(messages_per_page=32)]


# the feed's ledger and entries ---------------------------------------------------------

def test_the_ledger_keeps_the_first_stamp(entries):
    e = _event()
    assert entries.stamp_once(e, 1_000) is None
    earlier = entries.stamp_once(e, 2_000)
    assert earlier is not None and earlier.stamp == 1_000
    assert entries.stamp_once(_event(n=2), 3_000) is None  # another event: its own row


def test_a_restamp_loses_to_a_concurrent_one(entries):
    e = _event()
    entries.stamp_once(e, 1_000)
    seen = entries.stamp_once(e, 2_000)
    assert entries.restamp(e, 5_000, seen.etag) is True
    assert entries.restamp(e, 6_000, seen.etag) is False  # the row changed since
    assert entries.stamp_once(e, 7_000).stamp == 5_000


def test_a_batch_of_ledger_rows_is_stamped_together_or_not_at_all(entries):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(5)]
    assert entries.stamp_all(events[:3], 1_000) is True
    assert entries.stamp_once(events[1], 2_000).stamp == 1_000
    assert entries.stamp_all(events[2:], 3_000) is False  # one of them was stamped
    assert entries.stamp_once(events[4], 4_000) is None  # and nothing of that batch was


def test_a_batch_of_entries_is_written_under_one_stamp(entries, clock):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(120)]  # more than one transaction holds
    stamp = int(clock.at * 1_000_000)
    entries.put_entries([(e, None) for e in events], stamp)
    entries.put_entries([(e, None) for e in events[:3]], stamp)  # again: the same
    assert all(entries.has_entry(e, stamp) for e in events)
    got = list(entries.entries(bucket_of(stamp), "", None, Filters(tenants=(tenant,)), 1000))
    assert [event["event_id"] for _, event in got] == [
        e.event_id for e in sorted(events, key=lambda e: entry_key(e, stamp))]


def test_stored_alerts_are_read_many_at_once(alerts):
    tenant = str(uuid.uuid4())
    for n in range(20):
        _store_alert(alerts, tenant, {"id": f"da{n:06d}", "title": f"Alert {n}",
                                      "lastUpdateTime": "2026-11-30T10:00:00.0000000Z"})
    wanted = [f"da{n:06d}" for n in range(0, 20, 1)] + ["da999999", "da000003"]
    found = alerts.get_stored_many(tenant, wanted)
    assert sorted(found) == [f"da{n:06d}" for n in range(20)]  # 2 queries; a miss left out
    assert found["da000007"] == alerts.get_stored(tenant, "da000007")
    assert alerts.get_stored_many(str(uuid.uuid4()), ["da000001"]) == {}


def test_a_batch_appends_each_event_once_even_redelivered(feed, alerts, clock):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(30)]
    for e in events[:10]:
        _store_alert(alerts, tenant, e.alert)  # stored as this version: copied whole
    assert feed.append_all(events[:20]) == [True] * 20
    clock.at += 1
    assert feed.append_all(events) == [False] * 20 + [True] * 10  # a redelivery, and more
    assert feed.append_all(events[25:]) == [False] * 5
    clock.at += SETTLE + 1
    items = _all(feed, Filters(tenants=(tenant,)))
    assert sorted(i["event_id"] for i in items) == sorted(e.event_id for e in events)
    complete = {i["alert_id"] for i in items if i["alert_complete"]}
    assert complete == {e.alert_id for e in events[:10]}


def test_an_entry_names_the_schema_of_the_alert_it_copies(feed, alerts, clock):
    """A Graph alert's entry copies the alert as received and says so (`schema`), in the
    canonical spelling where it filters; its summary stands in when not copied."""
    tenant = str(uuid.uuid4())
    stored, brief = graph_alert(id="da-g1"), office_alert()
    alerts.store(alert_rows(tenant, stored, schema="graph"))
    events = []
    for doc in (stored, brief):
        version = alert_rows(tenant, doc, schema="graph")[0]["Version"]
        events.append(build_event(tenant, "Tenant", doc, version, None,
                                  tracked(doc, version, "graph"), schema="graph"))
    mde = _event(tenant, 1)
    assert feed.append_all([*events, mde]) == [True] * 3
    clock.at += SETTLE + 1
    items = {i["alert_id"]: i for i in _all(feed, Filters(tenants=(tenant,)))}
    assert items["da-g1"]["schema"] == "graph" and items["da-g1"]["alert"] == stored
    assert items["da-g1"]["alert_complete"] is True
    office = items[brief["id"]]
    assert office["schema"] == "graph" and office["alert_complete"] is False
    assert office["alert"]["product"] == "Microsoft Defender for Office 365"
    assert "schema" not in items["da000001"]  # an mde entry stays as it was
    medium = _all(feed, Filters(tenants=(tenant,), severities=("Medium",)))
    assert {i["alert_id"] for i in medium} == {brief["id"], "da000001"}


def test_a_batch_stopped_between_its_ledger_and_its_entries_is_taken_over(feed, clock):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(4)]
    feed.entries.stamp_all(events, feed.now_us())  # the worker died here
    clock.at += 60  # long after: its stamps are stale, the entries are keyed anew
    assert feed.append_all(events) == [True] * 4
    clock.at += SETTLE + 1
    assert sorted(i["event_id"] for i in _all(feed, Filters(tenants=(tenant,)))) == sorted(
        e.event_id for e in events)


def test_append_is_idempotent_per_event(feed, clock):
    e = _event()
    assert feed.append(e) is True
    clock.at += 1
    assert feed.append(e) is False  # a redelivery writes nothing
    clock.at += 60
    assert feed.append(e) is False
    clock.at += SETTLE
    [item] = _all(feed)
    assert item["event_id"] == e.event_id and item["alert"]["title"] == "Alert 1"
    assert item["feed_time"] == "2026-11-30T10:00:00Z"  # the first stamp


def test_an_own_change_reaches_the_feed_saying_who_made_it(feed, clock):
    """The MSSP's own changes are the customer's record too: in the feed, with `by`,
    alone and in a batch; a customer's change names nobody."""
    tenant = str(uuid.uuid4())
    by = {"id": "oid-ann", "name": "Ann | Analyst", "via": "entra"}
    own = replace(_event(tenant, 1, status="Resolved"), change="updated", by=by)
    batch = [replace(_event(tenant, n, status="Resolved"), change="updated", by=by)
             for n in (2, 3)]
    customers = replace(_event(tenant, 4), change="updated")
    assert feed.append(own) is True
    assert feed.append_all([*batch, customers]) == [True] * 3
    clock.at += SETTLE + 1
    items = {i["alert_id"]: i for i in _all(feed, Filters(tenants=(tenant,)))}
    assert {a: i.get("by") for a, i in items.items()} == {
        "da000001": by, "da000002": by, "da000003": by, "da000004": None}


def test_racing_appends_of_one_event_make_one_entry(feed, clock):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(10)]
    results: list[bool] = []

    def deliver() -> None:
        results.extend(feed.append(e) for e in events)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.at += SETTLE + 1
    assert sorted(i["event_id"] for i in _all(feed)) == sorted(e.event_id for e in events)
    assert results.count(True) >= 10


def test_an_attempt_that_died_is_keyed_anew_after_any_reader(feed, entries, clock):
    e = _event()
    assert entries.stamp_once(e, feed.now_us()) is None  # stamped, then the worker died
    clock.at += 60
    reader = feed.read(feed.start(), 100).position  # a reader is past the old stamp
    assert feed.append(e) is True
    assert feed.append(e) is False
    clock.at += SETTLE + 1
    page = feed.read(reader, 100)
    assert [i["event_id"] for i in page.events] == [e.event_id]
    assert [i["event_id"] for i in _all(feed)] == [e.event_id]  # the old key is gone


def test_a_write_slower_than_half_the_settle_is_keyed_anew(feed, entries, clock):
    e = _event()
    put = entries.put_entry
    writes: list[int] = []

    def put_slowly(event, stamp, raw=None) -> None:
        put(event, stamp, raw)
        writes.append(stamp)
        if len(writes) == 1:
            clock.at += SETTLE  # the first write is slow: a reader may be past its key

    entries.put_entry = put_slowly
    first = feed.now_us()
    assert feed.append(e) is True
    assert writes == [first, first + SETTLE * 1_000_000]
    assert not entries.has_entry(e, first)
    clock.at += SETTLE + 1
    [item] = _all(feed)
    assert item["feed_time"] == "2026-11-30T10:00:05Z"  # the second stamp
    assert feed.append(e) is False  # the ledger points at the entry that stands


def test_an_entry_rewritten_replaces_the_older_one(entries):
    e = _event()
    entries.put_entry(e, 10_000, {"Body00": b"x"})
    entries.put_entry(e, 10_000)  # REPLACE: no stale body left behind
    [(key, item)] = list(entries.entries(bucket_of(10_000), "", None, Filters(), 10))
    assert key.startswith("0000000000010000|") and item["alert_complete"] is False
    assert entries.has_entry(e, 10_000) and not entries.has_entry(e, 10_001)
    entries.drop_entry(e, 10_000)
    entries.drop_entry(e, 10_000)  # gone already: no error
    assert not entries.has_entry(e, 10_000)


def test_an_entry_copies_the_stored_alert_of_its_version_only(feed, alerts, clock):
    tenant = str(uuid.uuid4())
    current = _event(tenant, 1, "2026-11-30T10:00:00.0000000Z", evidence=[{"sha1": "ab"}])
    _store_alert(alerts, tenant, current.alert)
    stored = alerts.get_stored(tenant, current.alert_id)
    assert stored is not None and stored.version == current.version and stored.body_rows == 1
    assert alerts.get_stored(tenant, "other") is None
    older = _event(tenant, 1, "2026-11-30T09:00:00.0000000Z")  # superseded already
    feed.append(older)
    feed.append(current)
    clock.at += SETTLE + 1
    by_version = {i["version"]: i for i in _all(feed)}
    assert by_version[current.version]["alert_complete"] is True
    assert by_version[current.version]["alert"]["evidence"] == [{"sha1": "ab"}]
    assert by_version[older.version]["alert_complete"] is False  # the summary stands in


def test_entries_come_in_stamp_order_once_settled(feed, clock):
    tenant = str(uuid.uuid4())
    events = [_event(tenant, n) for n in range(4)]
    for e in reversed(events):  # written in reverse: the order is the stamps'
        feed.append(e)
        clock.at += 1
    assert [i["event_id"] for i in _all(feed)] == []  # none settled yet
    clock.at += SETTLE - 4  # the horizon reaches the first stamp (inclusive)
    assert [i["event_id"] for i in _all(feed)] == [events[3].event_id]
    clock.at += 3
    assert [i["event_id"] for i in _all(feed)] == [e.event_id for e in reversed(events)]


def test_paging_by_stamp_across_hours_sees_each_entry_once(feed, clock):
    tenant = str(uuid.uuid4())
    written = []
    for n in range(7):
        e = _event(tenant, n)
        feed.append(e)
        written.append(e.event_id)
        clock.at += 1_500  # entries land in several hourly buckets
    clock.at += SETTLE
    position, seen, pages = feed.start(), [], 0
    while True:
        page = feed.read(position, 2, Filters(tenants=(tenant,)))
        seen += [i["event_id"] for i in page.events]
        position, pages = page.position, pages + 1
        if not page.more:
            break
    assert seen == written and pages >= 4
    assert feed.read(position, 2).events == []  # the last position: nothing again


def test_filters_match_on_both_backends(feed, clock):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    cases = [(tenant, "High", "New", "2026-11-30T08:00:00.0000000Z"),
             (tenant, "Low", "New", "2026-11-30T09:00:00.0000000Z"),
             (tenant, "High", "Resolved", "2026-11-30T10:00:00.0000000Z"),
             (other, "High", "New", "2026-11-30T11:00:00.0000000Z")]
    for n, (t, severity, status, version) in enumerate(cases):
        feed.append(_event(t, n, version, severity=severity, status=status))
        clock.at += 1
    clock.at += SETTLE

    def titles(**filters) -> list[str]:
        return [i["alert"]["title"] for i in _all(feed, Filters(**filters))]

    assert titles(tenants=(tenant,)) == ["Alert 0", "Alert 1", "Alert 2"]
    assert titles(tenants=(tenant, other), severities=("High",)) == [
        "Alert 0", "Alert 2", "Alert 3"]
    assert titles(statuses=("Resolved",)) == ["Alert 2"]
    assert titles(tenants=(tenant,), since="2026-11-30T09:00:00.0000000Z",
                  until="2026-11-30T10:00:00.0000000Z") == ["Alert 1", "Alert 2"]


def test_prune_goes_through_a_point_and_resumes_from_it(entries, alerts):
    feed = Feed(entries, alerts, SETTLE, 7)  # prune counts from the real now
    now_us = feed.now_us()
    old = [now_us - hours * 3_600_000_000 for hours in (9 * 24, 9 * 24 + 12)]
    kept = now_us - 86_400_000_000
    e = _event()
    for stamp in [*old, kept]:
        entries.put_entry(e, stamp)
    assert entries.pruned_through() is None
    hour = [(datetime.now(UTC) - timedelta(days=8)).strftime("%Y%m%d%H")]
    assert feed.prune() == 2
    hour.append((datetime.now(UTC) - timedelta(days=8)).strftime("%Y%m%d%H"))
    assert entries.pruned_through() in hour  # through the retention's end
    assert feed.prune() == 0  # resumes where the last one ended
    assert entries.has_entry(e, kept) and not any(entries.has_entry(e, s) for s in old)


def test_ledger_rows_go_by_day(entries):
    e = _event(version="2026-11-20T10:00:00.0000000Z")
    entries.stamp_once(e, 1_000)
    assert entries.drop_ledger_day("20261119") == 0
    assert entries.drop_ledger_day("20261120") == 1
    assert entries.stamp_once(e, 2_000) is None  # forgotten: stamped anew
    entries.put_entry(e, 3_000)
    assert entries.drop_hour(bucket_of(3_000)) == 1 and not entries.has_entry(e, 3_000)


def test_set_stamp_moves_the_ledger(entries):
    e = _event()
    entries.stamp_once(e, 1_000)
    entries.set_stamp(e, 9_000)
    assert entries.stamp_once(e, 10_000).stamp == 9_000


# delivery state ------------------------------------------------------------------------

def test_an_output_row_is_created_once(states):
    assert states.get("hook") is None
    first = states.create("hook", "2026113010", "0001|a")
    again = states.create("hook", "2026113011", "0002|b")  # a racing creator: no change
    assert (again.bucket, again.after) == ("2026113010", "0001|a") == (first.bucket,
                                                                       first.after)
    got = states.get("hook")
    assert got is not None and got.failures == 0 and got.owner == "" and got.retry_at is None


def test_a_cursor_advance_loses_to_a_concurrent_one(states):
    seen = states.create("hook", "2026113010", "")
    now = datetime.now(UTC)
    mine = states.advance(seen, "2026113010", "0005|x", now, delivered_at=now)
    with pytest.raises(StateChanged):
        states.advance(seen, "2026113011", "0009|y", now)  # a stale copy of the row
    got = states.get("hook")
    assert (got.bucket, got.after) == ("2026113010", "0005|x") and got.etag == mine.etag
    assert got.last_success_at is not None
    with pytest.raises(StateChanged):
        states.mark_queued(seen, now)


def test_each_change_is_kept(states):
    now = datetime.now(UTC).replace(microsecond=0)
    state = states.create("hook", "b", "a")
    state = states.mark_queued(state, now)
    assert states.get("hook").queued_at == now
    state = states.unqueue(state)
    assert states.get("hook").queued_at is None
    state = states.take_lease(state, "me", now + timedelta(seconds=120))
    got = states.get("hook")
    assert got.owner == "me" and got.lease_until == now + timedelta(seconds=120)
    state = states.mark_failed(state, "HTTP 503", now, 3, now + timedelta(seconds=40))
    got = states.get("hook")
    assert (got.owner, got.failures, got.last_error) == ("", 3, "HTTP 503")
    assert got.last_error_at == now and got.retry_at == now + timedelta(seconds=40)
    state = states.take_lease(state, "me", now)
    state = states.advance(state, "b2", "a2", now)  # nothing sent: no success time
    got = states.get("hook")
    assert (got.failures, got.retry_at, got.last_success_at) == (0, None, None)
    assert got.last_error == "HTTP 503"  # kept for the status
    states.release(state)
    assert states.get("hook").owner == ""


def test_status_lists_each_output(states):
    hook = Output("hook", "webhook", "json")
    new = Output("new", "syslog", "cef")
    now_us = int(datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp() * 1e6)
    state = states.create("hook", bucket_of(now_us), f"{now_us - 30_000_000:016d}|x")
    failed_at = datetime(2026, 11, 30, 9, 59, tzinfo=UTC)
    states.mark_failed(state, "refused", failed_at, 2, failed_at + timedelta(seconds=20))
    assert output_status(states, (hook, new), now_us) == [
        {"name": "hook", "type": "webhook", "format": "json", "lag_seconds": 30,
         "failures": 2, "last_error": "refused", "last_error_at": failed_at.isoformat(),
         "retry_at": (failed_at + timedelta(seconds=20)).isoformat(),
         "last_success_at": None},
        {"name": "new", "type": "syslog", "format": "cef", "lag_seconds": None,
         "failures": 0, "last_error": None, "last_error_at": None, "retry_at": None,
         "last_success_at": None}]


def test_the_deliver_queue_carries_typed_requests(queue):
    queue.request("hook")
    queue.request("syslog-1")
    assert sorted(_requested(queue)) == ["hook", "syslog-1"]


def test_a_new_reader_starts_at_the_retention_start(feed):
    assert feed.start() == Position(
        (datetime.fromtimestamp(T0, UTC) - timedelta(days=7)).strftime("%Y%m%d%H"))


# a tenant's view of the feed -------------------------------------------------------------

def _pages(feed: Feed, filters: Filters, limit: int) -> list[list[str]]:
    position, pages = feed.start(), []
    while True:
        page = feed.read(position, limit, filters)
        pages.append([i["event_id"] for i in page.events])
        position = page.position
        if not page.more:
            return pages


def test_a_tenant_filtered_read_equals_the_feed_filtered_by_tenant(feed, clock):
    """Read from the tenant's view: exactly the entries of the unfiltered feed that are
    the tenant's, in order, across hours and pages (and a rewrite and a drop kept in step)."""
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    for n in range(30):
        feed.append(_event(tenants[n % 3], n, severity=("High", "Low")[n % 2]))
        clock.at += 400  # several hours
    clock.at += SETTLE
    everything = _all(feed, limit=7)
    for tenant in tenants:
        mine = [e["event_id"] for e in everything if e["tenant"] == tenant]
        assert len(mine) == 10
        for limit in (1, 3, 100):
            pages = _pages(feed, Filters(tenants=(tenant,)), limit)
            assert [e for page in pages for e in page] == mine
        high = [e["event_id"] for e in everything
                if e["tenant"] == tenant and e["alert"]["severity"] == "High"]
        assert [e["event_id"] for e in _all(feed, Filters(tenants=(tenant,),
                                                          severities=("High",)))] == high


def test_a_dropped_entry_leaves_its_tenants_view(entries, alerts, clock):
    feed = Feed(entries, alerts, SETTLE, 7, clock)
    e = _event()
    stamp = feed.now_us()
    entries.put_entry(e, stamp)
    entries.drop_entry(e, stamp)
    clock.at += SETTLE + 1
    assert _all(feed, Filters(tenants=(e.tenant_id,))) == []


def test_an_hour_copied_to_views_again_changes_nothing(entries, alerts, clock):
    feed = Feed(entries, alerts, SETTLE, 7, clock)
    e = _event()
    entries.put_entry(e, feed.now_us())
    clock.at += SETTLE + 1
    assert entries.copy_hour_to_views(bucket_of(feed.now_us() - SETTLE * 10**6)) == 1
    assert [i["event_id"] for i in _all(feed, Filters(tenants=(e.tenant_id,)))] == [
        e.event_id]
    assert entries.drop_hour(bucket_of(feed.now_us() - SETTLE * 10**6)) == 1
    assert _all(feed, Filters(tenants=(e.tenant_id,))) == []


def test_one_alerts_entries_are_read_by_its_id_newest_version_first(feed, entries, clock):
    tenant = str(uuid.uuid4())
    versions = ["2026-11-29T23:00:00.0000000Z", "2026-11-30T09:00:00.0000000Z",
                "2026-11-30T10:00:00.0000000Z"]
    for n, version in enumerate(versions):
        event = _event(tenant, 1, version, id="da/1")
        event = AlertEvent(tenant, "Tenant", "da/1", version, "updated" if n else "new",
                           {"status": ["New", "Resolved"]} if n else {}, event.alert)
        assert feed.append(event)
        clock.at += 1
    feed.append(_event(tenant, 2, versions[2], id="da/10"))  # a longer id, same start
    feed.append(_event(str(uuid.uuid4()), 3, versions[2], id="da/1"))  # another tenant
    feed.append(_event(tenant, 4, versions[2], id="da/1:x"))  # an id with a colon after
    found = entries.of_alert(tenant, "da/1", ["20261130", "20261129"], 10)
    assert [e["version"] for e in found] == versions[::-1]
    assert found[0]["changed"] == {"status": ["New", "Resolved"]} and "alert" not in found[0]
    assert found[2]["change"] == "new" and found[2]["feed_time"].startswith("2026-11-30T10")
    assert [e["version"] for e in entries.of_alert(tenant, "da/1", ["20261130"], 10)] == \
        versions[:0:-1]
    assert len(entries.of_alert(tenant, "da/1", ["20261130", "20261129"], 2)) == 2
    assert entries.of_alert(tenant, "da/404", ["20261130"], 10) == []
