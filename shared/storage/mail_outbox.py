"""Every email, sent or not, kept in MailOutbox for the portal and for audit.

Partition: the tenant (or "ops" for ops notices); RowKey: reversed 100 ns ticks and a
random suffix, so a partition reads newest first. An email about alerts also leaves a
pointer (its columns without the bodies) in each alert's own partition,
"~alert|<tenant>|<alert key>", so the alert page reads its emails in one query; those
row keys start with "~", after every ticks key, so the pages listing emails never meet
them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient

from shared.storage.keys import encode_key
from shared.storage.limits import clip_text

_MAX_TICKS = 10**19 - 1
SCAN_ROWS = 2000  # rows read at most for the all-tenants page


@dataclass
class KeptEmail:
    tenant_id: str  # the partition: a tenant id, or "ops"
    at: datetime
    state: str  # "sent", or "<refused|failed>: <why>"
    subject: str
    to: str
    text: str
    rule: str  # its owner: a rule id, or "ops"
    event_id: str = ""
    message_id: str = ""
    refused: list[dict[str, str]] = field(default_factory=list)  # [{"address", "reason"}]
    html: str = ""  # the HTML part, as it would arrive (the portal's outbox shows it)
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (tenant, alert id) it is about


def ticks_key(at: datetime) -> str:
    """The part of a RowKey that sorts newer rows first."""
    return f"{_MAX_TICKS - int(at.timestamp() * 10**7):019d}"


def alert_partition(tenant_id: str, alert_id: str) -> str:
    """Where the pointers to an alert's emails are kept."""
    return f"~alert|{tenant_id}|{encode_key(alert_id)}"


class MailOutbox:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def keep(self, email: KeptEmail) -> None:
        """The email, after a pointer to it in each of its alerts' partitions (a worker
        that dies between them leaves a pointer to an email not kept: the alert page says
        that it was being sent, which it was)."""
        row_key = f"{ticks_key(email.at)}:{uuid.uuid4().hex[:8]}"
        columns = {"Rule": email.rule, "EventId": email.event_id[:500],
                   "State": email.state[:1000], "Subject": email.subject, "To": email.to,
                   "At": email.at, "MessageId": email.message_id, "Tenant": email.tenant_id}
        for tenant_id, alert_id in dict.fromkeys(email.alerts):
            self.client.upsert_entity({"PartitionKey": alert_partition(tenant_id, alert_id),
                                       "RowKey": f"~{row_key}", **columns})
        self.client.upsert_entity({
            "PartitionKey": email.tenant_id, "RowKey": row_key, **columns,
            "Refused": json.dumps(email.refused)[:30000],
            "Text": clip_text(email.text), "Html": clip_text(email.html)})

    def for_alert(self, tenant_id: str, alert_id: str, limit: int = 20) -> list[KeptEmail]:
        """The newest `limit` emails about one alert (without their bodies): one query."""
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={
            "pk": alert_partition(tenant_id, alert_id)}, results_per_page=limit)
        found = []
        for row in rows:
            if len(found) >= limit:
                break
            found.append(_kept({**row, "PartitionKey": row.get("Tenant", tenant_id)}))
        return found

    def recent(self, tenant_id: str | None = None, limit: int = 50, days: int = 14,
               now: datetime | None = None) -> list[KeptEmail]:
        """The last `days` of emails, newest first: one tenant's, or everyone's (of the
        first SCAN_ROWS rows read)."""
        cutoff = ticks_key((now or datetime.now(UTC)) - timedelta(days=days))
        if tenant_id:
            rows = self.client.query_entities("PartitionKey eq @pk and RowKey lt @cut",
                                              parameters={"pk": tenant_id, "cut": cutoff},
                                              results_per_page=limit)
            bound = limit
        else:
            rows = self.client.query_entities("RowKey lt @cut", parameters={"cut": cutoff})
            bound = SCAN_ROWS
        found = []
        for row in rows:
            if len(found) >= bound:
                break
            found.append(_kept(row))
        found.sort(key=lambda m: m.at, reverse=True)
        return found[:limit]


def _kept(row: dict) -> KeptEmail:
    try:
        refused = json.loads(row.get("Refused") or "[]")
    except ValueError:  # cut at 30,000 characters
        refused = []
    return KeptEmail(tenant_id=row["PartitionKey"], at=row["At"], state=row.get("State", ""),
                     subject=row.get("Subject", ""), to=row.get("To", ""),
                     text=row.get("Text", ""), rule=row.get("Rule", ""),
                     event_id=row.get("EventId", ""), message_id=row.get("MessageId", ""),
                     refused=refused, html=row.get("Html", ""))
