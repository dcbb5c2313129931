"""The SIEM feed and pull semantics on Azurite: each alert version once, stable paging."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.messages import AlertEvent, IncidentEvent
from shared.siem.feed import Filters, bucket_of
from shared.siem.pull import parse_query, pull
from shared.validation import ValidationError
from tests.integration.siem_fixtures import drain, event, feed_for


def _feed_events(pipeline, feed, tenant_id: str, copies: int = 1) -> list[AlertEvent]:
    """What the siem_feed function does with each message on the siem-events queue."""
    events = [AlertEvent.parse(json.dumps(e)) for e in pipeline.events(tenant_id)]
    for _ in range(copies):
        for e in events:
            feed.append(e)
    return events


def test_every_version_once_with_the_raw_alert_across_tenants(pipeline, storage_env):
    writer = reader = feed_for(storage_env)
    a = pipeline.add_tenant("SIEM A", alerts=23)
    b = pipeline.add_tenant("SIEM B", alerts=11)
    for tenant in (a, b):
        pipeline.fetch(tenant)
        _feed_events(pipeline, writer, tenant.tenant_id, copies=2)  # redelivered: no-op
    mine = Filters(tenants=tuple(sorted((a.tenant_id, b.tenant_id))))
    time.sleep(1.1)  # the settle
    seen, position = drain(reader, mine, limit=5)
    assert len(seen) == 34 and len({e["event_id"] for e in seen}) == 34
    stored = pipeline.rows(a.tenant_id) | pipeline.rows(b.tenant_id)
    for item in seen:
        assert item["alert_complete"] is True
        assert item["alert"] == stored[item["alert_id"]]  # the raw alert, evidence and all
        assert item["tenant_name"] in ("SIEM A", "SIEM B")
    order = [e["feed_time"] for e in seen]
    assert order == sorted(order)

    # an update is one more version; the token from the last poll returns just that
    alert_id = seen[0]["alert_id"]
    tenant_id = seen[0]["tenant"]
    pipeline.sim.update_alert(tenant_id, alert_id)
    pipeline.fetch(tenant_id)
    _feed_events(pipeline, writer, tenant_id)
    time.sleep(1.1)
    again, _ = drain(reader, mine, start=position)
    assert [(e["alert_id"], e["change"]) for e in again] == [(alert_id, "updated")]
    assert again[0]["alert"] == pipeline.rows(tenant_id)[alert_id]  # the new version
    assert again[0]["version"] > seen[0]["version"]


def test_filters_by_severity_status_and_time(storage_env):
    writer = reader = feed_for(storage_env)
    tenant = str(uuid.uuid4())
    cases = [("High", "New", "2026-11-30T08:00:00.0000000Z"),
             ("Low", "New", "2026-11-30T09:00:00.0000000Z"),
             ("High", "Resolved", "2026-11-30T10:00:00.0000000Z"),
             ("Medium", "InProgress", "2026-11-30T11:00:00.0000000Z")]
    for n, (severity, status, version) in enumerate(cases):
        writer.append(event(tenant, n, version, severity=severity, status=status))
    time.sleep(1.1)

    def titles(**params: str) -> list[str]:
        query = parse_query({"tenant": tenant, **params})
        items, _, more = pull(reader, query)
        assert not more
        return [i.alert["title"] for i in items]

    assert titles() == ["Alert 0", "Alert 1", "Alert 2", "Alert 3"]
    assert titles(severity="High") == ["Alert 0", "Alert 2"]
    assert titles(severity="High,Medium", status="New,InProgress") == ["Alert 0", "Alert 3"]
    assert titles(since="2026-11-30T09:00:00Z", until="2026-11-30T10:00:00Z") == [
        "Alert 1", "Alert 2"]


def test_filters_by_product_and_type_page_exactly(storage_env):
    """`product` (Graph's serviceSource; an mde alert is an endpoint one) and `type`
    select among the entries read; small pages still see each match once."""
    writer = reader = feed_for(storage_env)
    tenant = str(uuid.uuid4())
    sources = [None, "microsoftDefenderForOffice365", "microsoftDefenderForIdentity",
               "microsoftDefenderForOffice365", None, "microsoftDefenderForOffice365"]
    for n, source in enumerate(sources):
        extra = {"serviceSource": source} if source else {}
        writer.append(event(tenant, n, f"2026-11-30T0{n}:00:00.0000000Z", **extra))
    writer.append(IncidentEvent(tenant, "T", "17", "2026-11-30T07:00:00.0000000Z", "new", {},
                                {"name": "Phish campaign", "severity": "high"}))
    time.sleep(1.1)

    def pulled(**params: str) -> list[str]:
        found: list[str] = []
        token = None
        for _ in range(20):
            query = parse_query({"tenant": tenant, **params,
                                 **({"continuation": token} if token else {})})
            items, token, more = pull(reader, query)
            found += [i.incident_id or i.alert["title"] if i.type == "incident"
                      else i.alert["title"] for i in items]
            if not more:
                return found
        raise AssertionError("paging did not end")

    office = ["Alert 1", "Alert 3", "Alert 5"]
    assert pulled(product="microsoftDefenderForOffice365") == office
    assert pulled(product="microsoftDefenderForOffice365", limit="1") == office
    assert pulled(product="microsoftDefenderForEndpoint") == ["Alert 0", "Alert 4"]
    assert pulled(product="microsoftDefenderForIdentity,microsoftDefenderForEndpoint",
                  limit="2") == ["Alert 0", "Alert 2", "Alert 4"]
    assert pulled(type="incident") == ["17"]
    assert pulled(type="alert", limit="4") == [f"Alert {n}" for n in range(6)]
    assert pulled(type="alert,incident") == [*(f"Alert {n}" for n in range(6)), "17"]
    assert pulled() == [*(f"Alert {n}" for n in range(6)), "17"]
    for bad in ({"product": "defender"}, {"type": "alerts"}):
        with pytest.raises(ValidationError) as refused:
            parse_query({"tenant": tenant, **bad})
        assert [e["field"] for e in refused.value.errors] == list(bad)
    # a token is for the filters it was issued with
    _, token, _ = pull(reader, parse_query({"tenant": tenant, "limit": "1"}))
    with pytest.raises(ValidationError) as refused:
        parse_query({"tenant": tenant, "type": "alert", "continuation": token})
    assert refused.value.errors[0]["field"] == "continuation"


def test_tokens_stay_correct_while_alerts_arrive_during_paging(storage_env):
    """Two writers append while a SIEM pages with small pages: none missed, none twice."""
    feed = feed_for(storage_env, settle=2)
    tenant = str(uuid.uuid4())
    written: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write(worker: int) -> None:
        n = 0
        while not stop.is_set():
            e = event(tenant, worker * 10_000 + n)
            feed.append(e)
            with lock:
                written.append(e.event_id)
            n += 1

    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for thread in writers:
        thread.start()
    query = parse_query({"tenant": tenant, "limit": "7"})
    seen: list[str] = []
    token = None
    pages = 0
    deadline = time.monotonic() + 6
    while True:
        params = {"tenant": tenant, "limit": "7", **({"continuation": token} if token else {})}
        items, token, more = pull(feed, parse_query(params))
        seen += [i.event_id for i in items]
        pages += 1
        if time.monotonic() > deadline and not stop.is_set():
            stop.set()
            for thread in writers:
                thread.join()
            deadline = time.monotonic() + 2.5  # past the settle: the last writes show
        elif stop.is_set() and time.monotonic() > deadline and not more:
            break
        if not more:
            time.sleep(0.2)
    assert query.limit == 7 and pages > 10
    assert len(written) > 50
    assert len(seen) == len(set(seen)), "an alert version was returned twice"
    assert set(seen) == set(written), f"missed {len(set(written) - set(seen))}"


def test_an_attempt_that_died_is_keyed_anew_so_no_reader_can_be_past_it(storage_env):
    """A worker stamped the ledger, then died before writing the entry: the retry writes the
    entry with a fresh key (after any reader's position), once."""
    feed = feed_for(storage_env, settle=2)
    tenant = str(uuid.uuid4())
    e = event(tenant, 1)
    old = feed.now_us() - 10_000_000  # ten seconds ago, beyond half the settle
    assert feed.entries.stamp_once(e, old) is None  # stamped, and no entry written
    reader = feed_for(storage_env, settle=2)
    position = reader.read(reader.start(), 100, Filters(tenants=(tenant,))).position
    assert feed.append(e) is True
    assert feed.append(e) is False  # written now: a redelivery adds nothing
    time.sleep(2.2)
    items = reader.read(position, 100, Filters(tenants=(tenant,))).events
    assert [i["event_id"] for i in items] == [e.event_id]  # found after the old position
    assert not feed.entries.has_entry(e, old)


def test_a_redelivery_racing_the_first_delivery_makes_one_entry(storage_env):
    feed = feed_for(storage_env)
    tenant = str(uuid.uuid4())
    events = [event(tenant, n) for n in range(20)]
    results: list[bool] = []

    def deliver() -> None:
        results.extend(feed.append(e) for e in events)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(1.1)
    seen, _ = drain(feed, Filters(tenants=(tenant,)))
    assert sorted(i["event_id"] for i in seen) == sorted(e.event_id for e in events)
    assert results.count(True) >= 20


def test_prune_drops_what_is_older_than_the_retention(storage_env):
    feed = feed_for(storage_env)
    tenant = str(uuid.uuid4())
    old_us = feed.now_us() - 9 * 86_400 * 1_000_000
    e = event(tenant, 1)
    feed.entries.put_entry(e, old_us)
    with contextlib.suppress(ResourceNotFoundError):  # as on the first prune ever
        feed.entries.client.delete_entity("meta", "prune")
    assert feed.prune() >= 1
    assert feed.prune() == 0  # done: the next one starts where this one ended
    assert list(feed.entries.client.query_entities("PartitionKey eq @pk",
                                                   parameters={"pk": bucket_of(old_us)})) == []
