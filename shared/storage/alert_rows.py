"""Alerts as Table entities within Azure's limits, which Azurite does not enforce.

Limits kept here (and checked again, as Azure counts them, before every transaction is
sent: `limits.py`): 64 KiB per string or binary property, 1 MiB per entity, 252
properties, 100 operations and 4 MiB per transaction, one PartitionKey per transaction.
The whole alert is kept as compressed JSON split over binary properties of the main row
(as many as its indexed copies leave room for) and, when it is larger, of overflow rows
written in the same transaction. Only when even that cannot hold it is evidence
truncated, with a flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from shared import codec, timefmt
from shared.alerts.view import MDE, MDE_SOURCE, AlertView
from shared.storage.keys import encode_key
from shared.storage.limits import (  # noqa: F401 (the packing limits, re-exported)
    MAX_TRANSACTION_OPS,
    MAX_TRANSACTION_WIRE,
    Checked,
    check_entity,
    packed,
    wire_size,
)

CHUNK_BYTES = 60_000  # binary property payload (limit 64 KiB)
CHUNK_COST = 8 + 2 * len("Body00") + CHUNK_BYTES + 4  # in Azure's count of an entity
CHUNKS_PER_ROW = 13  # an overflow row: ~780 KB of 1 MiB
ROW_BUDGET = 1_000_000  # of Azure's 1 MiB per entity, for the main row with its strings
MAX_ROWS_PER_ALERT = 4
MAX_STRING_CHARS = 8_000  # indexed copies only; the full text is in the body
OVERFLOW_MARK = "%~"  # cannot come out of encode_key (it escapes every %)

INDEXED = {  # entity property -> alert field
    "Title": "title", "Severity": "severity", "Status": "status",
    "Classification": "classification", "Determination": "determination",
    "AssignedTo": "assignedTo", "Category": "category", "DetectionSource": "detectionSource",
    "ComputerDnsName": "computerDnsName", "MachineId": "machineId",
    "RbacGroupName": "rbacGroupName", "ThreatName": "threatName",
    "AlertCreationTime": "alertCreationTime", "LastUpdateTime": "lastUpdateTime",
    "InvestigationState": "investigationState",
}


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return value[:MAX_STRING_CHARS]
    return value


def _compress(alert: dict[str, Any]) -> bytes:
    return codec.pack(alert)


def _truncate_evidence(alert: dict[str, Any], budget: int) -> tuple[dict[str, Any], bytes]:
    """Shorten evidence strings, then drop evidence items, until the body fits."""
    for limit in (65_536, 8_192, 1_024):
        evidence = [{k: (v[:limit] + "…[truncated]" if isinstance(v, str) and len(v) > limit
                         else v) for k, v in item.items()} if isinstance(item, dict) else item
                    for item in alert.get("evidence") or []]
        trial = {**alert, "evidence": evidence}
        body = _compress(trial)
        if len(body) <= budget:
            return trial, body
    kept = list(trial.get("evidence") or [])
    while kept:
        kept.pop()
        trial = {**alert, "evidence": kept}
        body = _compress(trial)
        if len(body) <= budget:
            return trial, body
    trial = {**alert, "evidence": []}
    return trial, _compress(trial)


class Rows(list[dict[str, Any]]):
    """One alert's rows, with a bound on their JSON size counted as they were built (the
    packing into transactions needs it; counting it again cost a pass over every row)."""

    wire: int = 0


def _binary_wire(name: str, data: bytes) -> int:
    return 40 + len(name) + (len(data) + 2) // 3 * 4  # as limits.wire_size counts it


def alert_rows(tenant_id: str, alert: dict[str, Any], ingested_at: datetime | None = None,
               data: bytes | None = None, schema: str = MDE, *, key: str | None = None,
               view: AlertView | None = None) -> Rows:
    """The main row and any overflow rows for one alert (all one transaction's worth).
    `data`: the alert's JSON as received, stored as it is (else the alert is serialized).
    `schema`: the API the alert came from ("mde" or "graph"), kept on the row; the
    indexed columns are the same for both (taken through shared/alerts/view.py). `key`
    (else its `id`) and `version` (else its lastUpdateTime): a Graph alert's.
    `view`: the alert parsed already (shared/alerts/view.py `parsed`).
    The rows are `Checked`: within Azure's limits by the checks and bounds here."""
    if schema == MDE:
        view = None
    elif view is None:
        view = AlertView.of(alert, schema)
    fields = view.fields() if view else alert  # an mde alert is in these names already
    alert_id = key or str(alert["id"])  # `key`: a Graph endpoint alert's mde id
    row_key = encode_key(alert_id)
    version = timefmt.normalize(fields["lastUpdateTime"])
    incident = fields.get("incidentId")
    main = Checked({
        "PartitionKey": tenant_id, "RowKey": row_key, "AlertId": _clip(alert_id),
        "Version": version, "LastUpdated": timefmt.to_datetime(version),
        "IngestedAt": ingested_at or datetime.now(UTC),
        "IncidentId": incident if isinstance(incident, int) else None,
        "MitreTechniques": _clip(codec.dumps_text(fields.get("mitreTechniques") or [])),
        "Schema": schema,
        # another product's (Defender for Endpoint's alerts' rows stay as they were)
        **({"Product": _clip(view.product)} if view and view.service_source != MDE_SOURCE
           else {}),
        "BodyEncoding": codec.ENCODING, "BodyBytes": 0, "BodyRows": 0,
        "EvidenceTruncated": False,
    })
    for prop, name in INDEXED.items():  # _clip(str(value)) inline: 15 fields an alert
        value = fields.get(name)
        if value is not None:
            if type(value) is not str:
                value = str(value)
            main[prop] = value if len(value) <= MAX_STRING_CHARS else value[:MAX_STRING_CHARS]
    # the body fills what the indexed copies leave of the main row, then overflow rows
    head = check_entity(main)  # the body's chunks are added below within ROW_BUDGET
    main_chunks = min(CHUNKS_PER_ROW, (ROW_BUDGET - head) // CHUNK_COST)
    budget = CHUNK_BYTES * (main_chunks + CHUNKS_PER_ROW * (MAX_ROWS_PER_ALERT - 1))
    body = codec.compress(data) if data is not None else _compress(alert)
    if len(body) > budget:
        _, body = _truncate_evidence(alert, budget)
        main["EvidenceTruncated"] = True
    chunks = [body[i:i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]
    # a JSON property takes at most 3x its bytes in Azure's count, plus 100 (wire_size's
    # own count: 40 a property, 6 bytes a UTF-16 unit escaped, keys counted once)
    rows = Rows([main])
    rows.wire = 3 * head + 100 * len(main)
    for i, chunk in enumerate(chunks[:main_chunks]):
        main[f"Body{i:02d}"] = chunk
        rows.wire += _binary_wire(f"Body{i:02d}", chunk)
    rest = chunks[main_chunks:]
    for n in range(1, 1 + (len(rest) + CHUNKS_PER_ROW - 1) // CHUNKS_PER_ROW):
        row = Checked({"PartitionKey": tenant_id, "RowKey": f"{row_key}{OVERFLOW_MARK}{n}",
                       "Version": version})
        rows.wire += 3 * check_entity(row) + 100 * len(row)
        for i, chunk in enumerate(rest[(n - 1) * CHUNKS_PER_ROW:n * CHUNKS_PER_ROW]):
            row[f"Body{i:02d}"] = chunk
            rows.wire += _binary_wire(f"Body{i:02d}", chunk)
        rows.append(row)
    main["BodyBytes"], main["BodyRows"] = len(body), len(rows)
    return rows


def read_alert(main: Any, overflow: Iterable[Any] = ()) -> dict[str, Any]:
    """Rebuild the alert JSON from its main row and overflow rows."""
    rows = [main, *sorted(overflow, key=lambda r: int(r["RowKey"].rsplit(OVERFLOW_MARK, 1)[1]))]
    if len(rows) != main.get("BodyRows", 1) or any(r["Version"] != main["Version"]
                                                   for r in rows):
        raise ValueError("alert rows are incomplete or of different versions")
    body = b"".join(bytes(r[k]) for r in rows for k in sorted(r) if k.startswith("Body")
                    and k[4:].isdigit())
    return codec.unpack(body)


def transactions(groups: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Pack groups of rows (one alert each, never split) into Azure-sized transactions,
    by the size `alert_rows` counted (else counted here)."""
    return packed(groups, group_size=lambda g: g.wire if isinstance(g, Rows) else None)
