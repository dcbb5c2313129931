"""What the relay writes to the AlertIndex for a chunk of events: the entry of each alert's
last version in the chunk, and a delete for every version it replaced."""

from __future__ import annotations

from shared.ingest.events import build_event, tracked
from shared.ingest.index_feed import index_changes
from shared.storage.alert_index import entry_of, key_of, shown
from shared.storage.alert_rows import alert_rows

TENANT = "00000000-0000-0000-0000-000000000018"
V1, V2, V3 = ("2026-12-01T10:00:00.0000000Z", "2026-12-01T11:00:00.0000000Z",
              "2026-12-02T09:00:00.0000000Z")


def _alert(version: str, **fields) -> dict:
    return {"id": "da/1?", "title": "Alert", "severity": "High", "status": "New",
            "category": "Execution", "rbacGroupName": "Servers",
            "computerDnsName": "host1", "alertCreationTime": V1, "lastUpdateTime": version,
            **fields}


def _event(version: str, old: str | None, **fields) -> dict:
    alert = _alert(version, **fields)
    before = tracked(_alert(old), old) if old else None
    return build_event(TENANT, "Contoso", alert, version, before,
                       tracked(alert, version)).dump()


def test_an_event_gives_the_entry_its_stored_row_would():
    entries, replaced = index_changes([_event(V1, None)])
    assert entries == [entry_of(alert_rows(TENANT, _alert(V1))[0])] and replaced == []
    assert shown(entries[0])["ComputerDnsName"] == "host1"


def test_an_update_deletes_the_version_it_replaced():
    entries, replaced = index_changes([_event(V2, V1, status="Resolved")])
    assert [e["Status"] for e in entries] == ["Resolved"]
    assert replaced == [key_of(TENANT, "da%2F1%3F", V1)]


def test_an_alert_twice_in_a_chunk_keeps_its_last_version_only():
    entries, replaced = index_changes([_event(V2, V1), _event(V3, V2, status="Resolved")])
    assert [(e["PartitionKey"], e["RowKey"]) for e in entries] == [
        key_of(TENANT, "da%2F1%3F", V3)]
    assert set(replaced) == {key_of(TENANT, "da%2F1%3F", V1), key_of(TENANT, "da%2F1%3F", V2)}


def test_a_status_change_at_the_same_version_rewrites_its_entry():
    entries, replaced = index_changes([_event(V1, None), _event(V1, V1, status="Resolved")])
    assert [e["Status"] for e in entries] == ["Resolved"] and replaced == []
