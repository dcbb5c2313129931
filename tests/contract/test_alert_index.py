"""The AlertIndex contract, on Azurite and on the memory fake: key order newest first
across tenants, keyset reads, filters, idempotent writes and deletes, and paging through
the portal's search (each alert once, in order, at the same cost at any depth)."""

from __future__ import annotations

import contextlib
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import timefmt
from shared.model import Tenant
from shared.portal import queries
from shared.portal.queries import AlertFilter, search_alerts
from shared.storage import tables
from shared.storage.alert_index import (
    AlertIndex,
    backfill,
    day_of_key,
    entry_of,
    key_of,
    mains,
    parts,
    repair,
    shown,
    valid_token,
)
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.ingest import MemoryAlerts

NOW = datetime.now(UTC).replace(microsecond=0)


def _fresh(storage, prefix: str):
    return tables.table(storage, f"{prefix}{uuid.uuid4().hex[:12]}")


@pytest.fixture
def index(backend):
    return backend.build(lambda s: AlertIndex(_fresh(s, "AlertIndex")), MemoryAlertIndex)


@pytest.fixture
def alerts(backend):
    return backend.build(lambda s: AlertRepository(_fresh(s, "Alerts")), MemoryAlerts)


def stored(alerts, index, rows: list[dict], replaced=()) -> None:
    """An alert version as ingest then the relay write it: its rows, then its entry (and
    the delete of the replaced version's)."""
    alerts.store(rows)
    index.record([entry_of(m) for m in mains(rows)], replaced)


def alert(n: int, updated: datetime, **fields: object) -> dict:
    stamp = timefmt.from_datetime(updated)
    return {"id": f"da{n:06d}", "title": f"Alert {n}", "severity": "High",
            "status": "New", "category": "Execution", "rbacGroupName": "Servers",
            "alertCreationTime": stamp, "lastUpdateTime": stamp, **fields}


def test_keys_sort_newest_first_and_name_their_day():
    older = key_of("t", "a", "2026-12-01T23:59:59.9999999Z")
    newer = key_of("t", "a", "2026-12-02T00:00:00.0000000Z")
    assert newer[1] < older[1] and newer[0] == "2026-12-02" == day_of_key(newer[1])
    assert parts(newer[1]) == ("2026-12-02T00:00:00.0000000Z", "t", "a")
    assert valid_token(newer[1]) and not valid_token("x" + newer[1])
    assert not valid_token("99999999999999999999~t~a")  # month 00


def test_entries_read_back_newest_first_from_a_keyset_with_filters(index):
    t1, t2 = str(uuid.uuid4()), str(uuid.uuid4())
    entries = [entry_of(alert_rows(t, alert(n, NOW - timedelta(minutes=n),
                                            severity=("High", "Low")[n % 2]))[0])
               for n in range(6) for t in (t1, t2)]
    index.put(entries)
    index.put(entries[:3])  # again: idempotent
    day = NOW.strftime("%Y-%m-%d")
    ours = sorted(e["RowKey"] for e in entries if e["PartitionKey"] == day)
    got = [e["RowKey"] for e in index.read(day, "", {}, 100)]
    assert got == ours
    assert [e["RowKey"] for e in index.read(day, ours[2], {}, 2)] == ours[3:5]
    assert [e["RowKey"] for e in index.read(day, "", {}, 100, per_request=2)] == ours
    high = list(index.read(day, "", {"Severity": ("High",), "Tenant": (t2,)}, 100))
    assert {(e["Tenant"], e["Severity"]) for e in high} == {(t2, "High")}
    assert shown(high[0])["Title"].startswith("Alert ") and parts(high[0]["RowKey"])[1] == t2
    both = list(index.read(day, "", {"Severity": ("High", "Low")}, 100))
    assert len(both) == len(ours)
    with pytest.raises(ValueError):
        list(index.read(day, "", {"Title": ("x",)}, 1))


def test_removing_entries_twice_or_missing_ones_is_harmless(index):
    t = str(uuid.uuid4())
    entries = [entry_of(alert_rows(t, alert(n, NOW))[0]) for n in range(4)]
    index.put(entries)
    keys = [(e["PartitionKey"], e["RowKey"]) for e in entries]
    index.remove(keys[:2])
    index.remove(keys[:3])  # two already gone, in one batch with one present
    assert sorted(e["RowKey"] for e in index.every()) == [keys[3][1]]


def test_an_alert_whose_version_moves_has_exactly_one_entry(alerts, index):
    t = str(uuid.uuid4())
    first = alert_rows(t, alert(1, NOW - timedelta(days=2)))
    stored(alerts, index, first)
    second = alert_rows(t, alert(1, NOW, status="Resolved"))
    old = key_of(t, first[0]["RowKey"], first[0]["Version"])
    stored(alerts, index, second, [old])
    stored(alerts, index, second, [old])  # redelivered: the delete finds nothing
    assert [(e["RowKey"], e["Status"]) for e in index.every()] == [
        (key_of(t, second[0]["RowKey"], second[0]["Version"])[1], "Resolved")]
    assert alerts.version(t, second[0]["RowKey"]) == second[0]["Version"]
    assert alerts.version(t, "nope") is None


def test_paging_through_every_tenant_returns_each_alert_once_in_order(backend, alerts,
                                                                     index):
    size, tenants_n = (10_000, 50) if backend.name == "memory" else (600, 6)
    tenants = [Tenant(str(uuid.uuid4()), f"T{i}") for i in range(tenants_n)]
    per = size // tenants_n
    for i, tenant in enumerate(tenants):
        rows = []
        for n in range(per):  # ties across tenants (same times), spread over six days
            rows.extend(alert_rows(tenant.tenant_id, alert(
                n, NOW - timedelta(minutes=(n * 37 + i % 3) % (6 * 24 * 60)))))
        for start in range(0, len(rows), 100):
            stored(alerts, index, rows[start:start + 100])
    seen, flt, pages = [], AlertFilter(), 0
    ids = {t.tenant_id for t in tenants}
    while True:
        page = search_alerts(index, tenants, flt, NOW, page_size=50)
        assert page.read <= 51 and not page.partial  # the same cost at any depth
        seen.extend(page.rows)
        pages += 1
        if not page.next_before:
            break
        flt = AlertFilter.parse({"before": page.next_before}, ids)
    assert len(seen) == size and pages == size // 50
    assert len({(r.tenant_id, r.alert_id) for r in seen}) == size
    assert [r.key for r in seen] == sorted(r.key for r in seen)
    assert [r.order for r in seen] == sorted(r.order for r in seen)


def test_a_filter_reads_at_most_its_bound_and_continues(alerts, index, monkeypatch):
    tenants = [Tenant(str(uuid.uuid4()), "A"), Tenant(str(uuid.uuid4()), "B")]
    for n in range(30):
        stored(alerts, index, alert_rows(tenants[n % 2].tenant_id, alert(
            n, NOW - timedelta(minutes=n), severity="Low" if n % 10 else "High")))
    monkeypatch.setattr(queries, "READ_PAGES", 2)
    ids, found = {t.tenant_id for t in tenants}, []
    flt = AlertFilter.parse({"tenant": tenants[0].tenant_id, "severity": "Low"}, ids)
    while True:  # tenant A's Low: 12 alerts, read 4 at most a request
        page = search_alerts(index, tenants, flt, NOW, page_size=2)
        assert page.read <= 4
        found.extend(r.alert_id for r in page.rows)
        if not page.next_before:
            break
        flt = AlertFilter.parse({**flt.params(), "before": page.next_before}, ids)
    assert found == [f"da{n:06d}" for n in range(30) if n % 2 == 0 and n % 10]


class Crash(RuntimeError):
    pass


def test_a_random_run_with_crashes_between_writes_keeps_the_index_in_step(
        backend, alerts, index, monkeypatch):
    """As ingest and the relay write: a version's rows are stored, then its event is
    committed (with the version it replaces, the one committed before), then the relay
    records it in the index and drops it; a crash at any write leaves the step to be done
    again (an uncommitted version is fetched again, an unrecorded event relayed again).
    Smaller on Azurite than tests/unit/test_alert_index_in_step.py."""
    rnd = random.Random(18)
    steps = {"put": index.put, "store": alerts.store, "remove": index.remove}
    armed: list[str] = []

    def crashing(name: str):
        def call(*args, **kwargs):
            if armed and armed[0] == name:
                armed.clear()
                raise Crash(name)
            return steps[name](*args, **kwargs)
        return call

    monkeypatch.setattr(index, "put", crashing("put"))
    monkeypatch.setattr(index, "remove", crashing("remove"))
    monkeypatch.setattr(alerts, "store", crashing("store"))
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    current: dict[tuple[str, int], dict] = {}
    committed: dict[tuple[str, int], str] = {}  # the version index: after a whole write
    outbox: list[tuple[list[dict], list]] = []  # committed events: (entries, replaced)

    def relay_one() -> None:
        entries, replaced = outbox[0]
        index.record(entries, replaced)
        outbox.pop(0)

    for _ in range(40 if backend.name == "azurite" else 300):
        if rnd.random() < 0.4:
            armed[:] = [rnd.choice(list(steps))]
        if outbox and rnd.random() < 0.4:
            with contextlib.suppress(Crash):
                relay_one()
            continue
        key = (rnd.choice(tenants), rnd.randrange(12))
        current[key] = alert(key[1], NOW - timedelta(days=rnd.randrange(4),
                                                     seconds=rnd.randrange(9_999)),
                             status=rnd.choice(("New", "Resolved")))
        rows = alert_rows(key[0], current[key])
        replaced = [key_of(key[0], rows[0]["RowKey"], committed[key])] \
            if key in committed else []
        try:
            alerts.store(rows)
        except Crash:
            continue
        committed[key] = rows[0]["Version"]
        outbox.append(([entry_of(m) for m in mains(rows)], replaced))
    armed.clear()
    while outbox:  # the relay catches up
        relay_one()
    for key, item in current.items():  # the fetches again, after the crashes
        rows = alert_rows(key[0], item)
        if committed.get(key) != rows[0]["Version"]:
            stored(alerts, index, rows, [key_of(key[0], rows[0]["RowKey"], committed[key])]
                   if key in committed else [])
    mains_ = [row for row in (alerts.client.list_entities() if backend.name == "azurite"
                              else alerts.rows.values()) if "%~" not in row["RowKey"]]
    want = {(e["PartitionKey"], e["RowKey"]): e for e in map(entry_of, mains_)}
    assert len(want) == len(current)
    got = {(e["PartitionKey"], e["RowKey"]): e for e in index.every()}
    assert got == want  # exactly: one entry per alert, at its version, with its columns
    assert repair(alerts, index, index.every()) == 0


def test_the_backfill_indexes_stored_alerts_resuming_where_it_stopped(alerts, index):
    t = str(uuid.uuid4())
    rows = [r for n in range(25) for r in alert_rows(t, alert(n, NOW - timedelta(hours=n)))]
    rows += alert_rows(t, alert(99, NOW, evidence=[{"blob": "x" * 2_000_000}]))
    for start in range(0, len(rows), 50):  # stored before the index existed
        alerts.store(rows[start:start + 50])
    assert index.backfilled_to(t) is None
    first = backfill(alerts, index, t, batch_rows=10, budget=10)
    assert (first.done, first.rows_read, first.entries) == (False, 10, 10)  # stopped early
    assert len(index.every()) == 10 and index.backfilled_to(t)
    assert backfill(alerts, index, t, batch_rows=10).done  # resumed, to the end
    again = backfill(alerts, index, t, batch_rows=10)
    assert again.done and again.rows_read == 0  # done: nothing read again
    want = {(e["PartitionKey"], e["RowKey"]) for e in map(entry_of, mains(rows))}
    assert {(e["PartitionKey"], e["RowKey"]) for e in index.every()} == want
    assert len(want) == 26


def test_a_version_that_moves_while_the_backfill_indexes_it_keeps_one_entry(
        alerts, index, monkeypatch):
    """The relay writes the new version between the backfill's read and its write: the
    backfill's check withdraws the entry of the version it read."""
    t = str(uuid.uuid4())
    old = alert_rows(t, alert(1, NOW - timedelta(days=1)))
    alerts.store(old)  # stored before the index existed
    new = alert_rows(t, alert(1, NOW, status="Resolved"))
    read = alerts.main_rows

    def racing(*args):
        rows = read(*args)
        if alerts.version(t, new[0]["RowKey"]) != new[0]["Version"]:
            stored(alerts, index, new, [key_of(t, old[0]["RowKey"], old[0]["Version"])])
        return rows

    monkeypatch.setattr(alerts, "main_rows", racing)
    done = backfill(alerts, index, t)
    assert done.done and done.withdrawn == 1
    assert [e["RowKey"] for e in index.every()] == [
        key_of(t, new[0]["RowKey"], new[0]["Version"])[1]]
