"""Digests: events held per rule and sent as one email every N minutes, grouped by tenant
and severity; also where events go when a rule is over its hourly cap.

Rows of partition <rule id> in NotifyDigest: one per held event (RowKey: its delivery
key), and `~state` (when the last digest went). Sending marks the held rows with a batch
id in transactions first, so a worker that dies mid-way resends the same batch, not a
different one; the ledger then makes the batch go once.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.messages import AlertEvent
from shared.notify.render import HTML_TEMPLATES, TEXT_TEMPLATES, envelope, fix_boundary, portal_link
from shared.notify.rules import Rule

STATE = "~state"
SEVERITY_ORDER = ("High", "Medium", "Low", "Informational", "UnSpecified")
BRIEF_CHARS = 512  # per held field: the held event stays one string property in Azure


def _short(value: Any) -> Any:
    return value[:BRIEF_CHARS] if isinstance(value, str) else value


class DigestStore:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def hold(self, rule: Rule, event: AlertEvent, recipients: list[str], key: str) -> None:
        alert = event.alert
        brief = {k: _short(alert.get(k)) for k in ("id", "title", "severity", "status",
                                                   "category", "computerDnsName",
                                                   "rbacGroupName", "alertCreationTime",
                                                   "lastUpdateTime")}
        self.client.upsert_entity({
            "PartitionKey": rule.id, "RowKey": key, "Batch": "",
            "Event": json.dumps({"tenant": event.tenant_id,  # ASCII, under 32K chars
                                 "tenant_name": _short(event.tenant_name),
                                 "change": event.change, "alert": brief}),
            "Recipients": json.dumps(recipients), "HeldAt": datetime.now(UTC)})

    def held(self, rule_id: str) -> list[Any]:
        return [r for r in self.client.query_entities("PartitionKey eq @pk",
                                                      parameters={"pk": rule_id})
                if not r["RowKey"].startswith("~")]

    def last_sent(self, rule_id: str) -> datetime | None:
        try:
            return self.client.get_entity(rule_id, STATE)["LastSentAt"]
        except ResourceNotFoundError:
            return None

    def due(self, rule: Rule, rows: list[Any], now: datetime) -> bool:
        if not rows:
            return False
        last = self.last_sent(rule.id)
        return last is None or now - last >= timedelta(minutes=rule.digest_minutes)

    def assign(self, rule_id: str, rows: list[Any]) -> tuple[str, list[Any]]:
        """The batch to send: an unfinished one if a worker died, else all free rows."""
        unfinished = sorted({r["Batch"] for r in rows if r["Batch"]})
        if unfinished:
            batch = unfinished[0]
            return batch, [r for r in rows if r["Batch"] == batch]
        batch = uuid.uuid4().hex
        free = [r for r in rows if not r["Batch"]]
        for start in range(0, len(free), 100):
            chunk = free[start:start + 100]
            try:
                self.client.submit_transaction([
                    ("update", {"PartitionKey": rule_id, "RowKey": r["RowKey"], "Batch": batch},
                     {"mode": UpdateMode.MERGE, "etag": r.metadata["etag"],
                      "match_condition": MatchConditions.IfNotModified}) for r in chunk])
            except HttpResponseError:
                raise RuntimeError("digest rows changed under us; retry") from None
        return batch, free

    def take_slot(self, rule: Rule, now: datetime) -> bool:
        """One of the rule's emails this hour, if its cap allows (ETag-counted)."""
        if rule.max_per_hour is None:
            return True
        key = f"~cap:{now:%Y%m%d%H}"
        for _ in range(10):
            try:
                row = self.client.get_entity(rule.id, key)
            except ResourceNotFoundError:
                try:
                    self.client.create_entity({"PartitionKey": rule.id, "RowKey": key,
                                               "Count": 1})
                    return True
                except HttpResponseError:
                    continue
            if row["Count"] >= rule.max_per_hour:
                return False
            try:
                self.client.update_entity({"PartitionKey": rule.id, "RowKey": key,
                                           "Count": row["Count"] + 1}, mode=UpdateMode.MERGE,
                                          etag=row.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return True
            except HttpResponseError:
                continue
        return False

    def done(self, rule_id: str, rows: list[Any]) -> None:
        keys = [{"PartitionKey": rule_id, "RowKey": r["RowKey"]} for r in rows]
        for start in range(0, len(keys), 100):
            self.client.submit_transaction([("delete", k) for k in keys[start:start + 100]])
        self.client.upsert_entity({"PartitionKey": rule_id, "RowKey": STATE,
                                   "LastSentAt": datetime.now(UTC)})


def digest_recipients(rows: list[Any]) -> list[str]:
    found: set[str] = set()
    for row in rows:
        found.update(json.loads(row["Recipients"]))
    return sorted(found)


def render_digest(rule: Rule, rows: list[Any], recipients: list[str], sender: str,
                  reply_to: str, mssp_name: str, date: datetime, msgid: str) -> EmailMessage:
    """One email: per tenant, per severity, a line per alert."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for row in rows:
        event = json.loads(row["Event"])
        names[event["tenant"]] = event.get("tenant_name") or event["tenant"]
        alert = event["alert"]
        alert["link"] = portal_link(str(alert.get("id", "")), event["tenant"]) \
            if rule.include_portal_link else ""
        alert["change"] = event.get("change")
        grouped[event["tenant"]][alert.get("severity") or "UnSpecified"].append(alert)
    tenants = [(names[t], [(sev, grouped[t][sev]) for sev in SEVERITY_ORDER if sev in grouped[t]])
               for t in sorted(grouped, key=lambda t: names[t].lower())]
    context = {"rule": rule, "tenants": tenants, "count": len(rows), "mssp_name": mssp_name}
    message = EmailMessage()
    envelope(message, f"[Digest] {len(rows)} alerts for rule {rule.name}", sender, recipients,
             reply_to, date, msgid)
    message.set_content(TEXT_TEMPLATES.get_template("digest.txt").render(**context))
    message.add_alternative(HTML_TEMPLATES.get_template("digest.html").render(**context),
                            subtype="html")
    fix_boundary(message)
    return message
