"""Pure parts of ingestion: keys, times, cursors, Azure's size limits, index shards."""

from __future__ import annotations

import json
import time

import pytest

from devtools.simulator.alerts import AlertFactory
from shared import codec, timefmt
from shared.ingest import worker as ingest
from shared.ingest.events import build_event, tracked
from shared.ingest.worker import Budget, advance, later
from shared.model import Cursor
from shared.storage import batch
from shared.storage.alert_rows import (
    CHUNK_BYTES,
    INDEXED,
    MAX_TRANSACTION_OPS,
    MAX_TRANSACTION_WIRE,
    alert_rows,
    read_alert,
    transactions,
    wire_size,
)
from shared.storage.ingest_state import SHARD_LIMIT, Index, Shard
from shared.storage.keys import decode_key, encode_key
from shared.storage.limits import Checked, check_entity

TENANT = "7f1c2a4e-1b2c-4d5e-8f90-123456789abc"


@pytest.mark.parametrize("value", ["da637472900382838869_1364969609", "a/b\\c#d?e%f",
                                   "%2F", "tab\there\x00\x7f\x9f", "ünïcødé", "%%u0041"])
def test_keys_round_trip_and_hold_no_forbidden_character(value):
    key = encode_key(value)
    assert decode_key(key) == value
    assert not any(c in key for c in "/\\#?") and all(0x20 <= ord(c) < 0x7F or ord(c) > 0x9F
                                                       for c in key)


def test_normalized_times_sort_as_text():
    raw = ["2021-01-26T20:33:57.72Z", "2021-01-26T20:33:57.7220239Z", "2021-01-26T20:33:57Z",
           "2021-01-26T21:33:57.7+01:00", "2021-01-26T20:33:57.0000001Z"]
    ordered = sorted(raw, key=lambda t: timefmt.to_datetime(t).timestamp()
                     + int(timefmt.normalize(t)[26]) * 1e-7)
    assert sorted(raw, key=timefmt.normalize) == ordered
    assert timefmt.normalize("2021-01-26T20:33:57.7220239Z") != timefmt.normalize(
        "2021-01-26T20:33:57.722023Z")


def test_cursor_advances_past_ties_and_never_moves_back():
    start = Cursor("2024-01-01T00:00:00.0000000Z", 0)
    t1, t2 = "2024-01-01T00:00:01.0000000Z", "2024-01-01T00:00:02.0000000Z"
    assert advance(start, [t1, t2, t2]) == Cursor(t2, 2)
    assert advance(Cursor(t2, 2), [t2, t2]) == Cursor(t2, 4)
    assert advance(Cursor(t2, 4), [t2, "2024-01-01T00:00:03.0000000Z"]) == Cursor(
        "2024-01-01T00:00:03.0000000Z", 1)
    # a chunk wholly older than the position (Defender out of order) leaves it where it is
    assert advance(Cursor(t2, 4), [start.watermark, t1]) == Cursor(t2, 4)
    assert later(Cursor(t2, 4), Cursor(t1, 9)) == Cursor(t2, 4)
    assert later(Cursor(t2, 4), Cursor(t2, 1)) == Cursor(t2, 4)
    assert later(None, Cursor(t1, 1)) == Cursor(t1, 1)


def test_budget_stays_under_defenders_limits():
    now = [1_000_000.0]
    budget = Budget({}, lambda: now[0])
    for _ in range(90):
        assert budget.wait_seconds() == 0
        budget.spend()
    assert 0 < budget.wait_seconds() <= 61
    for _ in range(15):  # 15 minutes of 90 calls each exceed 1,400 an hour
        now[0] += 60
        while budget.wait_seconds() == 0:
            budget.spend()
    assert sum(budget.minutes.values()) == 1_400
    assert budget.wait_seconds() > 60


def _alert(evidence_bytes: int = 0) -> dict:
    return AlertFactory(TENANT, "contoso.com").make(int(time.time() * 1e7),
                                                    evidence_bytes=evidence_bytes)


def _long_fields(alert: dict) -> dict:
    """Every indexed field at (beyond) its clip length, in UTF-16-heavy text."""
    return {**alert, **{name: "\u6f22\U0001f600" * 6_000 for name in INDEXED.values()
                        if name not in ("lastUpdateTime", "alertCreationTime")},
            "mitreTechniques": ["T1059"] * 3_000}


@pytest.mark.parametrize("evidence", [0, 300_000, 2 * 1024 * 1024])
@pytest.mark.parametrize("long_fields", [False, True])
@pytest.mark.parametrize("as_received", [False, True])
def test_rows_respect_azure_limits_and_rebuild_the_alert(evidence, long_fields, as_received):
    """Also when the alert is stored as the JSON it came as (spaced out, escaped)."""
    alert = _alert(evidence)
    if long_fields:  # the indexed copies leave less of the main row for the body
        alert = _long_fields(alert)
    data = json.dumps(alert, indent=1).encode() if as_received else None
    rows = alert_rows(TENANT, alert, data=data)
    for row in rows:
        # Azure's count: 1 MiB, 64 KiB a value, 252 properties; rows marked Checked are
        # not counted again before they are sent, so the mark must be true
        assert type(row) is Checked
        check_entity(row)
        for value in row.values():
            if isinstance(value, (bytes, str)):
                assert len(value) <= CHUNK_BYTES + 5000
    assert read_alert(rows[0], rows[1:]) == alert
    assert sum(wire_size(r) for r in rows) <= MAX_TRANSACTION_WIRE


def test_a_pages_first_chunks_are_small_then_full_and_sorted():
    """Storage starts on a small first chunk; later chunks are whole (fewer commits)."""
    versions = [f"2026-01-01T00:00:{i % 60:02d}.{i:07d}Z" for i in range(3_000)]
    items = [(v, "20260101", {"id": str(i)}, None) for i, v in enumerate(reversed(versions))]
    chunks = list(ingest.Ingestor._chunks(iter(items)))
    sizes = [len(c) for c in chunks]
    assert sizes == [125, 250, 500, 1000, 1000, 125]
    assert all([v for v, *_ in c] == sorted(v for v, *_ in c) for c in chunks)
    assert sorted(a["id"] for c in chunks for _, _, a, _ in c) == sorted(
        a["id"] for _, _, a, _ in items)


def test_evidence_too_big_for_a_transaction_is_truncated_with_a_flag():
    alert = _alert(12 * 1024 * 1024)
    rows = alert_rows(TENANT, alert)
    assert rows[0]["EvidenceTruncated"] is True
    rebuilt = read_alert(rows[0], rows[1:])
    assert rebuilt["id"] == alert["id"] and rebuilt["title"] == alert["title"]
    assert sum(wire_size(r) for r in rows) <= MAX_TRANSACTION_WIRE


def test_transactions_never_exceed_100_operations_or_4_mib():
    groups = [alert_rows(TENANT, _alert(200_000 if i % 7 == 0 else 0)) for i in range(260)]
    batches = list(transactions(groups))
    assert sum(len(b) for b in batches) == sum(len(g) for g in groups)
    for packed in batches:
        assert len(packed) <= MAX_TRANSACTION_OPS
        assert sum(wire_size(e) for e in packed) <= MAX_TRANSACTION_WIRE
        assert len({e["PartitionKey"] for e in packed}) == 1


def test_full_index_shard_spills_new_ids_into_the_next_one():
    index = Index()
    index.add(Shard("idx:20240101:00", {}, etag="W/1"))
    import random

    rng = random.Random(1)
    for n in range(60_000):
        entry = [f"2024-01-01T00:00:{n % 60:02d}.{rng.randrange(10**7):07d}Z",
                 "New", None, None, f"user{rng.randrange(10**9)}@x"]
        index.put(f"da{rng.randrange(10**18):018d}_{n}", "20240101", entry)
    packed = index.rebalance()
    assert len(packed) >= 2
    assert all(sum(len(v) for v in data.values()) <= SHARD_LIMIT for data in packed.values())
    assert sum(len(s.entries) for s in index.shards.values()) == 60_000


def test_events_fit_a_queue_message_whatever_the_alert():
    alert = _alert(2 * 1024 * 1024)
    alert["title"] = "x" * 100_000
    version = timefmt.normalize(alert["lastUpdateTime"])
    event = build_event(TENANT, "Co", alert, version, None, tracked(alert, version))
    import json

    assert len(json.dumps(event.dump())) <= 40_000
    assert event.change == "new" and event.event_id.endswith(version)


@pytest.mark.parametrize("created", [
    "2021-01-26T23:59:59Z", "2021-01-26T23:59:59.1234567Z", "2021-01-26T23:33:57.72+01:00",
    "2021-01-26T23:33:57-05:00", "2021-01-26 23:59:59Z", None, "", "soon", 12])
def test_index_day_is_the_utc_creation_day_else_the_version_day(created):
    version = "2021-02-03T04:05:06.0000000Z"
    try:
        expected = timefmt.normalize(created)[:10].replace("-", "")
    except (ValueError, TypeError, AttributeError):
        expected = "20210203"
    assert ingest.index_day({"alertCreationTime": created}, version) == expected
    assert len(expected) == 8 and expected.isdigit()


@pytest.mark.parametrize("evidence", [0, 300_000, 2 * 1024 * 1024])
@pytest.mark.parametrize("text", ["plain", '"\\' * 4_000, "\x01\x1f" * 4_000,
                                  "\u6f22\U0001f600" * 4_000])
def test_the_size_counted_while_building_rows_bounds_their_json(evidence, text):
    """Transactions are packed by the size alert_rows counted: it must never be less
    than what the rows take in a request, whatever the text (escapes, surrogates)."""
    alert = {**_alert(evidence), "title": text, "assignedTo": text, "id": text[:200] + "x"}
    rows = alert_rows(TENANT, alert)
    assert rows.wire >= sum(wire_size(r) for r in rows)
    assert rows.wire >= sum(len(codec.dumps(batch._properties(r))) for r in rows)  # real
    if text == "plain":  # and not so loose that it packs ordinary alerts thinly
        assert rows.wire <= 2 * sum(wire_size(r) for r in rows) + 10_000


def test_index_forgets_only_finished_days_outside_the_chunk():
    index = Index()
    for day, state in (("20260101", "clean"), ("20260102", "dirty"), ("20260103", "pending"),
                       ("20260104", "kept")):
        index.days.add(day)
        shard = index.add(Shard(f"idx:{day}:00", {f"a{day}": ["v"]}, etag="W/1"))
        index.where[f"a{day}"] = shard.row_key
        shard.dirty, shard.pending = state == "dirty", state == "pending"
    index.days.add("20260105")  # loaded, had no shard
    index.evict(keep={"20260104"})
    assert index.days == {"20260102", "20260103", "20260104"}
    assert set(index.where) == {"a20260102", "a20260103", "a20260104"}
    assert set(index.latest) == index.days
    assert index.get("a20260101") is None and index.get("a20260104") == ["v"]
