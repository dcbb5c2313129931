"""Every email, sent or not, kept in MailOutbox for the portal and for audit.

Partition: the tenant (or "ops" for ops notices); RowKey: reversed 100 ns ticks and a
random suffix, so a partition reads newest first.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient

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


def ticks_key(at: datetime) -> str:
    """The part of a RowKey that sorts newer rows first."""
    return f"{_MAX_TICKS - int(at.timestamp() * 10**7):019d}"


class MailOutbox:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def keep(self, email: KeptEmail) -> None:
        self.client.upsert_entity({
            "PartitionKey": email.tenant_id,
            "RowKey": f"{ticks_key(email.at)}:{uuid.uuid4().hex[:8]}",
            "Rule": email.rule, "EventId": email.event_id[:500], "State": email.state[:1000],
            "Subject": email.subject, "To": email.to, "At": email.at,
            "Refused": json.dumps(email.refused)[:30000], "MessageId": email.message_id,
            "Text": clip_text(email.text), "Html": clip_text(email.html)})

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
