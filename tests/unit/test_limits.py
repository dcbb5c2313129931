"""Azure's Table limits as Azure counts them: what Azurite would take and Azure refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.storage.limits import (
    MAX_ENTITY_BYTES,
    TooLarge,
    check_entity,
    check_transaction,
    clip_text,
    entity_size,
)


def test_entity_size_is_azures_count():
    entity = {"PartitionKey": "pk", "RowKey": "r\u00e9\U0001f600",  # 4 UTF-16 units
              "Name": "ab", "Blob": b"\x00" * 10, "Small": 7, "Big": 2 ** 40, "On": True,
              "At": datetime(2026, 1, 1, tzinfo=UTC), "Ratio": 0.5, "Gone": None}
    expected = (4 + 2 * (2 + 4)
                + (8 + 2 * 4 + 2 * 2 + 4)      # Name: string
                + (8 + 2 * 4 + 10 + 4)         # Blob: binary
                + (8 + 2 * 5 + 4)              # Small: Int32
                + (8 + 2 * 3 + 8)              # Big: Int64
                + (8 + 2 * 2 + 1)              # On: bool
                + (8 + 2 * 2 + 8)              # At: DateTime
                + (8 + 2 * 5 + 8))             # Ratio: double; Gone is not sent
    assert entity_size(entity) == expected


@pytest.mark.parametrize(("entity", "says"), [
    ({"PartitionKey": "p", "RowKey": "r", "B": b"x" * (64 * 1024 + 1)}, "property B"),
    ({"PartitionKey": "p", "RowKey": "r", "S": "\u00e9" * (32 * 1024 + 1)}, "property S"),
    ({"PartitionKey": "p", "RowKey": "r", **{f"P{i}": i for i in range(253)}},
     "253 properties"),
    ({"PartitionKey": "p", "RowKey": "r", **{f"B{i:02d}": b"x" * 60_000 for i in range(18)}},
     "bytes"),
])
def test_what_azure_refuses_is_refused(entity, says):
    with pytest.raises(TooLarge, match=says):
        check_entity(entity)


def test_at_the_limits_is_accepted():
    check_entity({"PartitionKey": "p", "RowKey": "r", "B": b"x" * (64 * 1024),
                  "S": "a" * (32 * 1024), **{f"P{i}": i for i in range(250)}})
    room = MAX_ENTITY_BYTES - entity_size({"PartitionKey": "p", "RowKey": "r",
                                           "Fill": b""})
    check_entity({"PartitionKey": "p", "RowKey": "r", "Fill": b"x" * min(room, 65_536)})


def test_transactions_over_100_operations_or_4_mib_are_refused():
    small = [{"PartitionKey": "p", "RowKey": str(i)} for i in range(101)]
    with pytest.raises(TooLarge, match="100 operations"):
        check_transaction(small, 101, 1_000)
    with pytest.raises(TooLarge, match="body"):
        check_transaction(small[:1], 1, 4 * 1024 * 1024 + 1)
    check_transaction(small[:100], 100, 4 * 1024 * 1024)


@pytest.mark.parametrize(("text", "chars"), [
    ("a" * 40_000, 32_000),
    ("\u6f22" * 40_000, 32_000),               # one UTF-16 unit each
    ("\U0001f600" * 40_000, 16_000),           # two units each
    ("a" + "\U0001f600" * 40_000, 16_000),     # the cut falls inside a pair: dropped whole
    ("short \U0001f600", 7),
])
def test_clip_text_to_what_one_string_property_holds(text, chars):
    clipped = clip_text(text)
    assert len(clipped) == chars and text.startswith(clipped)
    assert len(clipped.encode("utf-16-le")) <= 64 * 1024
