"""The lean $batch path against real Azurite: same rows, same errors as the SDK's own."""

from __future__ import annotations

import json
import os
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import EdmType, TableTransactionError, UpdateMode

from shared.model import Cursor
from shared.services import poison_log_on
from shared.storage import batch, tables
from shared.storage.alert_rows import alert_rows, read_alert, transactions
from shared.storage.ingest_state import ConflictError, Index, IngestState
from shared.storage.keys import encode_key
from shared.storage.limits import TooLarge

ODD_KEYS = ["it's", "a''b", "sp ace", "50%", "%2F", "plus+and&eq=", "ünï©ødé ✓", "(paren)",
            "a,b;c", encode_key("/\\#?\x01\x7f"), "'", "x" * 500]
# every test runs on the lean path and on the SDK's (STORAGE_FAST_PATHS=false)
pytestmark = pytest.mark.usefixtures("fast_paths")


@pytest.fixture
def table(storage_env):
    return tables.table(storage_env, "BatchTest")


def _entity(pk: str, rk: str) -> dict:
    blob = zlib.compress(json.dumps({"evidence": ["x" * 5000, rk]}).encode())
    return {"PartitionKey": pk, "RowKey": rk, "Text": "quote \" ' \\ </> ✓", "Small": 7,
            "Big": (2 ** 40, EdmType.INT64), "Flag": True, "Ratio": 0.25,
            "When": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "Body00": blob,
            "Empty": "", "Skipped": None, "Id": uuid.UUID(int=7)}


def _strip(entity) -> dict:
    return dict(entity)


def test_rows_read_back_exactly_as_the_sdk_writes_them(table):
    pk = uuid.uuid4().hex
    ours = [_entity(pk, f"lean-{k}") for k in ODD_KEYS]
    results = batch.submit_transaction(table, [("create", e) for e in ours])
    table.submit_transaction([("create", {**e, "RowKey": f"sdk-{e['RowKey'][5:]}"})
                              for e in ours])
    for entity, result in zip(ours, results, strict=True):
        lean = table.get_entity(pk, entity["RowKey"])
        sdk = table.get_entity(pk, "sdk-" + entity["RowKey"][5:])
        assert result["etag"] == lean.metadata["etag"]
        assert {**_strip(lean), "RowKey": "x"} == {**_strip(sdk), "RowKey": "x"}
        assert lean["Body00"] == entity["Body00"] and "Skipped" not in lean


def test_every_operation_kind_and_match_condition(table):
    pk = uuid.uuid4().hex
    (created,) = batch.submit_transaction(table, [("create", {"PartitionKey": pk,
                                                              "RowKey": "a", "V": 1})])
    batch.submit_transaction(table, [
        ("update", {"PartitionKey": pk, "RowKey": "a", "W": 2},
         {"mode": UpdateMode.MERGE, "etag": created["etag"],
          "match_condition": MatchConditions.IfNotModified}),
        ("upsert", {"PartitionKey": pk, "RowKey": "b", "V": 3}, {"mode": UpdateMode.REPLACE}),
        ("upsert", {"PartitionKey": pk, "RowKey": "c", "V": 4}),
    ])
    assert _strip(table.get_entity(pk, "a")) == {"PartitionKey": pk, "RowKey": "a", "V": 1,
                                                  "W": 2}
    batch.submit_transaction(table, [
        ("update", {"PartitionKey": pk, "RowKey": "a", "X": 5}, {"mode": UpdateMode.REPLACE}),
        ("delete", {"PartitionKey": pk, "RowKey": "b"}),
    ])
    assert _strip(table.get_entity(pk, "a")) == {"PartitionKey": pk, "RowKey": "a", "X": 5}
    with pytest.raises(ResourceNotFoundError):
        table.get_entity(pk, "b")
    assert batch.submit_transaction(table, []) == []


def test_a_failing_operation_rolls_back_the_whole_transaction(table):
    pk = uuid.uuid4().hex
    table.create_entity({"PartitionKey": pk, "RowKey": "taken", "V": "old"})
    ops = [("upsert", {"PartitionKey": pk, "RowKey": f"r{i}", "V": i}) for i in range(60)]
    ops.insert(41, ("create", {"PartitionKey": pk, "RowKey": "taken", "V": "new"}))
    with pytest.raises(TableTransactionError) as caught:
        batch.submit_transaction(table, ops)
    assert caught.value.status_code == 409
    assert caught.value.error_code == "EntityAlreadyExists"
    assert caught.value.index == 41
    rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}))
    assert [(r["RowKey"], r["V"]) for r in rows] == [("taken", "old")]


def test_if_match_mismatch_is_412_and_changes_nothing(table):
    pk = uuid.uuid4().hex
    (first,) = batch.submit_transaction(table, [("create", {"PartitionKey": pk,
                                                            "RowKey": "cursor", "V": 1})])
    batch.submit_transaction(table, [("update", {"PartitionKey": pk, "RowKey": "cursor",
                                                 "V": 2},
                                      {"mode": UpdateMode.REPLACE, "etag": first["etag"],
                                       "match_condition": MatchConditions.IfNotModified})])
    with pytest.raises(TableTransactionError) as caught:  # the first etag is stale now
        batch.submit_transaction(table, [
            ("upsert", {"PartitionKey": pk, "RowKey": "other", "V": 9}),
            ("update", {"PartitionKey": pk, "RowKey": "cursor", "V": 3},
             {"mode": UpdateMode.REPLACE, "etag": first["etag"],
              "match_condition": MatchConditions.IfNotModified})])
    assert caught.value.status_code == 412 and caught.value.index == 1
    assert caught.value.error_code == "UpdateConditionNotSatisfied"
    assert table.get_entity(pk, "cursor")["V"] == 2
    with pytest.raises(ResourceNotFoundError):
        table.get_entity(pk, "other")
    with pytest.raises(TableTransactionError) as missing:
        batch.submit_transaction(table, [("delete", {"PartitionKey": pk, "RowKey": "none"})])
    assert missing.value.status_code == 404


def test_a_stale_cursor_etag_is_a_conflict_for_the_ingest_commit(storage_env):
    client = tables.table(storage_env, tables.INGEST_STATE)
    tenant = str(uuid.uuid4())
    state = IngestState(client, tenant)
    _, etag = state.commit([], [], Cursor("2026-01-01T00:00:00.0000000Z"), None, "s")
    _, newer = state.commit([], [], Cursor("2026-01-02T00:00:00.0000000Z"), etag, "s")
    index = Index()
    index.put("alert-1", "20260101", ["v", "New", None, None, None])
    with pytest.raises(ConflictError, match="UpdateConditionNotSatisfied"):
        state.commit(index.snapshot(), [b'{"event": 1}'],
                     Cursor("2026-01-01T12:00:00.0000000Z"), etag, "s")
    assert state.cursor() == (Cursor("2026-01-02T00:00:00.0000000Z"), newer)
    assert state.outbox_rows() == [] and state.load_index(["20260101"]).shards == {}
    with pytest.raises(ConflictError, match="EntityAlreadyExists"):  # a second first commit
        state.commit([], [], Cursor("2026-01-03T00:00:00.0000000Z"), None, "s")


def test_a_full_100_operation_transaction_and_the_limits(table):
    pk = uuid.uuid4().hex
    ops = [("upsert", _entity(pk, f"r{i:03d}")) for i in range(100)]
    assert len(batch.submit_transaction(table, ops)) == 100
    assert len(list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk},
                                         select=["RowKey"]))) == 100
    with pytest.raises(ValueError, match="at most 100"):
        batch.submit_transaction(table, [*ops, ("upsert", _entity(pk, "r100"))])
    with pytest.raises(ValueError, match="Partition"):
        batch.submit_transaction(table, [("upsert", _entity(pk, "a")),
                                         ("upsert", _entity("other", "b"))])
    with pytest.raises(ValueError, match="Unrecognized"):
        batch.submit_transaction(table, [("insert", _entity(pk, "a"))])


@pytest.mark.parametrize("oversize", [
    {"Blob": b"x" * (64 * 1024 + 1)},                                   # one value
    {f"B{i:02d}": b"x" * 60_000 for i in range(18)},                    # the entity
    {f"P{i}": i for i in range(253)},                                    # properties
])
def test_what_azure_would_refuse_is_refused_before_sending(table, oversize):
    """Azurite stores all of these; Azure answers 400/413. Nothing of it is written."""
    pk = uuid.uuid4().hex
    with pytest.raises(TooLarge):
        batch.submit_transaction(table, [("upsert", _entity(pk, "ok")),
                                         ("upsert", {**_entity(pk, "big"), **oversize})])
    assert list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})) == []
    big = [("upsert", {**_entity(pk, f"r{i}"), **{f"B{j:02d}": b"x" * 60_000
                                                   for j in range(12)}}) for i in range(6)]
    with pytest.raises(TooLarge, match="body"):  # 6 entities of 720 KB: over 4 MiB
        batch.submit_transaction(table, big)


def test_a_2_mib_alert_goes_whole_in_one_transaction(table):
    pk = uuid.uuid4().hex
    alert = {"id": "da/huge?1", "lastUpdateTime": "2026-01-01T00:00:00.1234567Z",
             "evidence": [{"processCommandLine": os.urandom(1 << 20).hex()}]}  # 2 MiB
    rows = alert_rows(pk, alert)
    (ops,) = list(transactions([rows]))
    assert len(ops) > 1  # main row and overflow rows
    batch.submit_transaction(table, [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in ops])
    stored = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}))
    main = next(r for r in stored if r["RowKey"] == encode_key(alert["id"]))
    assert read_alert(main, [r for r in stored if r is not main]) == alert


def test_decode_reads_a_whole_batch_refusal_outside_a_changeset():
    content = (b"--batchresponse_1\r\nContent-Type: application/http\r\n"
               b"Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
               b"Content-Type: application/json\r\n\r\n"
               b'{"odata.error":{"code":"InvalidInput","message":{"value":"0:bad"}}}\r\n'
               b"--batchresponse_1--\r\n")
    ((status, _, body),) = batch.decode(content)
    assert status == 400 and json.loads(body)["odata.error"]["code"] == "InvalidInput"


def test_a_missing_table_raises_the_sdk_error(storage_env):
    missing = storage_env.table_service().get_table_client(f"Missing{uuid.uuid4().hex[:8]}")
    with pytest.raises(HttpResponseError) as ours:
        batch.submit_transaction(missing, [("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    with pytest.raises(HttpResponseError) as sdk:
        missing.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    assert type(ours.value) is type(sdk.value)
    assert (ours.value.status_code, ours.value.error_code) == (sdk.value.status_code,
                                                               sdk.value.error_code)


def test_one_entity_writes_through_the_sdk_are_checked_too(table, storage_env):
    """Every Table client carries the check (a request hook), not only `$batch`."""
    pk = uuid.uuid4().hex
    with pytest.raises(TooLarge, match="property Text"):
        table.upsert_entity({**_entity(pk, "mail"), "Text": "\U0001f600" * 20_000})
    with pytest.raises(TooLarge, match="bytes"):
        table.create_entity({**_entity(pk, "big"), **{f"B{i:02d}": b"x" * 60_000
                                                     for i in range(18)}})
    assert list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})) == []
    table.upsert_entity({**_entity(pk, "ok"), "Text": "\U0001f600" * 16_000,
                         "Blob": b"x" * 65_536})
    assert len(table.get_entity(pk, "ok")["Text"]) == 16_000


def test_a_poisoned_message_of_any_text_is_kept(storage_env):
    """A body of characters beyond the BMP (two UTF-16 units each) is clipped to what one
    string property holds, not refused."""
    log = poison_log_on(storage_env)
    body = '{"v": 1, "title": "' + "\U0001f600" * 40_000 + '"}'
    row_key = log.record("notify-events", body, "a reason")
    kept = tables.table(storage_env, tables.POISON_LOG).get_entity("notify-events", row_key)
    assert body.startswith(kept["Body"]) and len(kept["Body"]) > 16_000
