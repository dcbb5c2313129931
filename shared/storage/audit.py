"""The AuditTrail table: every triage action on a customer's alert, recorded once, never
changed. It is the MSSP's evidence of what its analysts did in a customer's tenant.

Keys (like storage/alert_index.py, a row key that sorts newest first: the action's time,
each digit inverted, then `~` and the action id):
- `alert~<tenant>~<alert>`: the alert's entries, and its claims `action~<action id>`. A
  new entry is one transaction in this partition: create the claim (refused if the action
  was recorded already) and write the alert's copy. So an action id is recorded once,
  whatever `at` a retried request brings, and a different entry never overwrites it.
  `intent~<action id>` notes an attempt before Defender is asked (`intend`), so a retry
  after a worker died between the call and the record knows it may have been sent.
- `incident~<tenant>~<incident>`: the same for an incident's entries (a graph tenant's
  incident triaged from the hub): an entry names its incident, and its alert id is "".
- `tenant~<tenant>` and `all`: copies for the audit page, written after the
  transaction from the stored entry (the same row each time: a retry completes them).
  A worker that dies between leaves an entry only on the alert's list until the action
  is recorded again (the API's Idempotency-Key does that).

Reads are keyset pages of one partition (the tenant's when filtered by tenant, else
`all`), newest first, from the row key after the last one shown. A page reads at most
`limit + 1` entries; an actor or outcome filter is evaluated by the table service inside
that partition and time range, so a rare value over a long range costs the service a
scan of that range (bound it with `since`), never more rows over the wire.

Every value (comments above all) is the customer's or an analyst's text: stored as JSON
strings, never interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import codec
from shared.storage import batch
from shared.storage.keys import encode_key
from shared.storage.limits import clip_text
from shared.triage.model import Actor, AuditEntry

EVERY = "all"
CLAIM = "action~"  # the recorded entry, by action id (sorts after every listed row)
INTENT = "intent~"  # an attempt under way, by action id
MAX_LIMIT = 200
MAX_DETAIL = 2_000
MAX_JSON = 15_000  # characters of one JSON column (a string column holds 32K UTF-16 units)
_INVERT = str.maketrans("0123456789", "9876543210")
_TOKEN = re.compile(r"[0-9]{20}~[^/\\#?\x00-\x1f\x7f-\x9f]{1,1024}")


def time_key(at: datetime) -> str:
    """20 digits that sort newest first (microseconds, UTC)."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f").translate(_INVERT)


def row_key(entry: AuditEntry) -> str:
    return f"{time_key(entry.at)}~{encode_key(entry.action_id)}"


def alert_partition(tenant_id: str, alert_id: str) -> str:
    return f"alert~{encode_key(tenant_id)}~{encode_key(alert_id)}"


def incident_partition(tenant_id: str, incident_id: str) -> str:
    return f"incident~{encode_key(tenant_id)}~{encode_key(incident_id)}"


def subject_partition(tenant_id: str, alert_id: str, incident_id: str = "") -> str:
    """The partition of an alert's entries, or of an incident's when `incident_id`."""
    return (incident_partition(tenant_id, incident_id) if incident_id
            else alert_partition(tenant_id, alert_id))


def tenant_partition(tenant_id: str) -> str:
    return f"tenant~{encode_key(tenant_id)}"


def claim_key(action_id: str) -> str:
    return CLAIM + encode_key(action_id)


def valid_continuation(text: str) -> bool:
    """Whether `text` can be a page's continuation (a row key of a listed entry)."""
    return bool(_TOKEN.fullmatch(text))


def bounds(since: datetime | None, until: datetime | None) -> tuple[str | None, str | None]:
    """(lowest, below) row keys of entries at `since` <= at <= `until` (both optional):
    newer is smaller, so `until` gives the low end and `since` the high one."""
    low = time_key(until) if until else None
    below = time_key(since - timedelta(microseconds=1)) if since else None
    return low, below


def _json(value: dict[str, Any]) -> str:
    """JSON of a free-form part, or a marker when it would not fit a string column
    (clipped JSON would not parse back)."""
    text = codec.dumps_text(value)
    return text if len(text) <= MAX_JSON else codec.dumps_text({"clipped": len(text)})


def to_row(entry: AuditEntry) -> dict[str, Any]:
    """The columns of an entry (without keys): JSON for the free-form parts."""
    return {"ActionId": entry.action_id, "At": entry.at.astimezone(UTC),
            "ActorId": clip_text(entry.actor.id, 1_000),
            "ActorName": clip_text(entry.actor.name, 1_000), "Via": entry.actor.via,
            "Tenant": entry.tenant_id, "Alert": entry.alert_id,
            "Change": _json(entry.change), "Before": _json(entry.before),
            "After": _json(entry.after), "Outcome": entry.outcome,
            "Detail": clip_text(entry.detail, MAX_DETAIL), "BatchId": entry.batch_id,
            "Extra": _json(entry.extra), "Incident": entry.incident_id}


def _utc(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.astimezone(UTC)


def from_row(row: Mapping[str, Any]) -> AuditEntry:
    def data(name: str) -> dict[str, Any]:
        try:
            value = codec.loads(str(row.get(name) or "{}"))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    return AuditEntry(
        action_id=str(row["ActionId"]), at=_utc(row["At"]),
        actor=Actor(str(row.get("ActorId", "")), str(row.get("ActorName", "")),
                    str(row.get("Via", ""))),
        tenant_id=str(row["Tenant"]), alert_id=str(row["Alert"]), change=data("Change"),
        before=data("Before"), after=data("After"), outcome=str(row["Outcome"]),
        detail=str(row.get("Detail") or ""), batch_id=str(row.get("BatchId") or ""),
        extra=data("Extra"), incident_id=str(row.get("Incident") or ""))


class AuditTrail:
    """Append-only: `record` writes an action once; nothing updates or deletes it."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    # writes ----------------------------------------------------------------------------
    def record(self, entry: AuditEntry) -> AuditEntry:
        """Record `entry` once per (tenant, alert, action id). Returns the entry as
        recorded: `entry` as it reads back, or the one recorded before under its id."""
        pk = subject_partition(entry.tenant_id, entry.alert_id, entry.incident_id)
        row = to_row(entry)
        try:
            batch.submit_transaction(self.client, [
                ("create", {"PartitionKey": pk, "RowKey": claim_key(entry.action_id),
                            **row}),
                ("upsert", {"PartitionKey": pk, "RowKey": row_key(entry), **row},
                 {"mode": UpdateMode.REPLACE})])
            stored = from_row(row)  # as it reads back (a part too large is a marker)
        except TableTransactionError as exc:
            if exc.status_code != 409:
                raise
            found = self.recorded(entry.tenant_id, entry.alert_id, entry.action_id,
                                  incident_id=entry.incident_id)
            if found is None:  # append-only: a claim is never removed
                raise
            stored, row = found, to_row(found)
        for partition in (tenant_partition(stored.tenant_id), EVERY):
            self.client.upsert_entity({"PartitionKey": partition,
                                       "RowKey": row_key(stored), **row},
                                      mode=UpdateMode.REPLACE)
        return stored

    def intend(self, tenant_id: str, alert_id: str, action_id: str, at: datetime, *,
               incident_id: str = "") -> datetime | None:
        """Note that the action is about to be sent (before Defender is asked): None
        when this is the first attempt, else when an earlier attempt noted it (it may
        have been sent: its worker died before recording the answer). `incident_id`:
        the action is on that incident (`alert_id` "")."""
        row = {"PartitionKey": subject_partition(tenant_id, alert_id, incident_id),
               "RowKey": INTENT + encode_key(action_id), "At": at.astimezone(UTC)}
        try:
            self.client.create_entity(row)
            return None
        except ResourceExistsError:
            found = self.client.get_entity(row["PartitionKey"], row["RowKey"])
            return _utc(found["At"])

    # reads -----------------------------------------------------------------------------
    def recorded(self, tenant_id: str, alert_id: str, action_id: str, *,
                 incident_id: str = "") -> AuditEntry | None:
        """The entry recorded under `action_id` for the alert (or the incident), if any
        (one point read)."""
        try:
            return from_row(self.client.get_entity(
                subject_partition(tenant_id, alert_id, incident_id), claim_key(action_id)))
        except ResourceNotFoundError:
            return None

    def for_alert(self, tenant_id: str, alert_id: str, limit: int = 100) -> list[AuditEntry]:
        """The alert's entries, newest first (at most `limit`)."""
        rows = self._query("PartitionKey eq @pk and RowKey lt @claims",
                           {"pk": alert_partition(tenant_id, alert_id), "claims": "a"},
                           limit)
        return [from_row(r) for r in rows]

    def for_incident(self, tenant_id: str, incident_id: str, limit: int = 100
                     ) -> list[AuditEntry]:
        """The incident's entries, newest first (at most `limit`)."""
        rows = self._query("PartitionKey eq @pk and RowKey lt @claims",
                           {"pk": incident_partition(tenant_id, incident_id), "claims": "a"},
                           limit)
        return [from_row(r) for r in rows]

    def page(self, tenant_id: str | None = None, actor_id: str | None = None,
             outcome: str | None = None, since: datetime | None = None,
             until: datetime | None = None, continuation: str | None = None,
             limit: int = 50) -> tuple[list[AuditEntry], str | None]:
        """Entries newest first, filtered; and the continuation of the next page (None
        when this one is the last). ValueError for a continuation no page gave."""
        if continuation and not valid_continuation(continuation):
            raise ValueError("not a continuation of the audit trail")
        limit = max(1, min(MAX_LIMIT, limit))
        clauses = ["PartitionKey eq @pk"]
        params: dict[str, Any] = {"pk": tenant_partition(tenant_id) if tenant_id else EVERY}
        low, below = bounds(since, until)
        if continuation and (low is None or continuation >= low):
            clauses.append("RowKey gt @after")
            params["after"] = continuation
        elif low:
            clauses.append("RowKey ge @low")
            params["low"] = low
        if below:
            clauses.append("RowKey lt @below")
            params["below"] = below
        for column, value in (("ActorId", actor_id), ("Outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} eq @{column.lower()}")
                params[column.lower()] = value
        rows = list(self._query(" and ".join(clauses), params, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [from_row(r) for r in rows], (str(rows[-1]["RowKey"]) if more else None)

    def _query(self, query: str, params: dict[str, Any], limit: int
               ) -> Iterator[Mapping[str, Any]]:
        rows = self.client.query_entities(query, parameters=params,
                                          results_per_page=max(1, min(1000, limit)))
        for count, row in enumerate(rows):
            if count >= limit:
                return
            yield row
