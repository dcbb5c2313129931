"""Alert text is anyone's: every line break and control character must be stored and read
back exactly through every write path, on Azurite as on Azure. A raw U+2028 in a lean
`$batch` body made Azurite drop the properties after it, and the tenant's every fetch
failed from then on."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from azure.data.tables import UpdateMode

from shared.storage import batch, tables
from shared.storage.alert_rows import OVERFLOW_MARK, alert_rows, read_alert
from shared.storage.queue_sender import sender

LINE_BREAKS = "\n\x0b\x0c\r\x85\u2028\u2029"
CONTROLS = "".join(map(chr, range(0x20))) + "\x7f" + "".join(map(chr, range(0x80, 0xa0)))
# more that a hostile or careless text carries; not the noncharacters U+FFFE and U+FFFF,
# whose fate in Azure's string properties is not documented
OTHERS = "\ufeff\u200b\u200e\u202e\ue000\ufffd\U0001f600\U0010fffd ü ✓ \" \\ ' </> &amp;"
ODD = LINE_BREAKS + CONTROLS + OTHERS
# every test runs on the lean paths and on the SDK's (STORAGE_FAST_PATHS=false)
pytestmark = pytest.mark.usefixtures("fast_paths")


def _alert(alert_id: str, evidence_bytes: int = 0) -> dict:
    """An alert with the odd text in its title, device name and evidence."""
    filler = secrets.token_hex(evidence_bytes // 2) if evidence_bytes else ""
    return {"id": alert_id, "title": f"Suspicious{ODD}title", "severity": "High",
            "status": "New", "computerDnsName": f"pc{LINE_BREAKS}01.contoso.example",
            "lastUpdateTime": "2026-01-02T03:04:05.1234567Z",
            "alertCreationTime": "2026-01-02T03:04:05.1234567Z",
            "evidence": [{"entityType": "File", "fileName": f"a{ODD}.exe",
                          "processCommandLine": ODD + filler + ODD}]}


def _read(table, pk: str, alert_id: str) -> tuple[dict, dict]:
    """(the stored alert, its main row) read back with the SDK."""
    entities = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}))
    main = next(e for e in entities if e.get("AlertId") == alert_id)
    extra = [e for e in entities if e["RowKey"].startswith(main["RowKey"] + OVERFLOW_MARK)]
    assert len(extra) == main["BodyRows"] - 1
    return read_alert(main, extra), main


@pytest.fixture
def table(storage_env):
    return tables.table(storage_env, "OddCharacters")


@pytest.mark.parametrize("evidence_bytes", [0, 1_800_000], ids=["one-row", "overflow"])
def test_alert_rows_read_back_exactly_through_lean_and_sdk_transactions(table, evidence_bytes):
    pk = uuid.uuid4().hex
    written = {}
    for path, submit in (("lean", lambda ops: batch.submit_transaction(table, ops)),
                         ("sdk", table.submit_transaction)):
        alert = _alert(f"{path}-{ODD}", evidence_bytes)
        rows = alert_rows(pk, alert)
        assert (len(rows) > 1) == bool(evidence_bytes)
        submit([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows])
        stored, main = _read(table, pk, alert["id"])
        assert stored == alert, path
        assert (main["Title"], main["ComputerDnsName"]) == (alert["title"],
                                                            alert["computerDnsName"])
        written[path] = {k: v for k, v in main.items()  # what differs with the id and time
                         if k not in ("RowKey", "AlertId", "IngestedAt", "BodyBytes")
                         and not k[4:].isdigit()}
    assert written["lean"] == written["sdk"]


def test_every_lean_operation_kind_keeps_the_text(table):
    pk = uuid.uuid4().hex
    batch.submit_transaction(table, [("create", {"PartitionKey": pk, "RowKey": "a",
                                                 "Text": ODD, "After": "kept"})])
    batch.submit_transaction(table, [
        ("update", {"PartitionKey": pk, "RowKey": "a", "More": ODD}),  # merge
        ("upsert", {"PartitionKey": pk, "RowKey": "b", "Text": ODD, "After": "kept"},
         {"mode": UpdateMode.REPLACE})])
    a, b = table.get_entity(pk, "a"), table.get_entity(pk, "b")
    assert (a["Text"], a["More"], a["After"]) == (ODD, ODD, "kept")
    assert (b["Text"], b["After"]) == (ODD, "kept")


def test_single_entity_writes_keep_the_text(table):
    """The SDK's own one-entity calls (each through the limits request hook)."""
    pk = uuid.uuid4().hex
    table.create_entity({"PartitionKey": pk, "RowKey": "c", "Text": ODD, "After": "kept"})
    table.upsert_entity({"PartitionKey": pk, "RowKey": "u", "Text": ODD, "After": "kept"})
    table.update_entity({"PartitionKey": pk, "RowKey": "c", "More": ODD})
    c, u = table.get_entity(pk, "c"), table.get_entity(pk, "u")
    assert (c["Text"], c["More"], c["After"]) == (ODD, ODD, "kept")
    assert (u["Text"], u["After"]) == (ODD, "kept")


def test_queue_messages_keep_the_text_through_both_senders(storage_env):
    name = f"odd-{uuid.uuid4().hex[:12]}"
    client = tables.queue(storage_env, name)
    texts = {json.dumps({"via": "lean", "title": ODD}, ensure_ascii=False),
             json.dumps({"via": "sdk", "title": ODD}, ensure_ascii=False), ODD + "\U0010ffff"}
    lean, sdk, raw = sorted(texts)
    sender(storage_env, name).send_message(lean)
    client.send_message(sdk)
    sender(storage_env, name).send_message(raw)
    got = {m.content for m in client.receive_messages(messages_per_page=32, max_messages=32)}
    assert got == texts
    client.delete_queue()


def test_a_tenant_whose_alert_has_u2028_in_its_title_is_fetched(pipeline):
    tenant = pipeline.add_tenant("Line Separator Co")
    template_id = pipeline.sim.generate(tenant.tenant_id, 1)["ids"][0]
    (template,) = pipeline.sim.alerts(tenant.tenant_id)
    odd = {**template, "id": template_id + "-odd", "title": f"Before\u2028after{ODD}",
           "computerDnsName": f"pc\u2029{LINE_BREAKS}.contoso.example",
           "evidence": [{**e, "fileName": f"x{ODD}.exe"} for e in template["evidence"]]}
    pipeline.sim.add_alerts(tenant.tenant_id, [odd])

    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new) == ("success", 2)
    source = {a["id"]: a for a in pipeline.sim.alerts(tenant.tenant_id)}
    assert source[odd["id"]]["title"] == odd["title"]
    assert pipeline.rows(tenant.tenant_id) == source
    row = pipeline.row(tenant.tenant_id, odd["id"])
    assert (row["Title"], row["ComputerDnsName"]) == (odd["title"], odd["computerDnsName"])
    events = {e["alert_id"]: e for e in pipeline.events(tenant.tenant_id)}
    assert events[odd["id"]]["alert"]["title"] == odd["title"]
    assert pipeline.fetch(tenant).outcome == "success"  # and the next run too
    assert pipeline.tenants.get(tenant.tenant_id).consecutive_failures == 0
