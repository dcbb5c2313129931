"""One notify event in: for every matching rule, at most one email per alert version."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from shared.config import Settings
from shared.identity import tokens_for
from shared.messages import BadMessage
from shared.model import parse_tenant_id
from shared.notify.digest import DigestStore, render_digest
from shared.notify.ledger import Busy, Ledger, delivery_key
from shared.notify.matching import matches, recipients_for
from shared.notify.render import render
from shared.notify.rules import GLOBAL, Rule, RuleRepository
from shared.notify.transport import (
    GraphTransport,
    Permanent,
    RecordOnly,
    SmtpTransport,
    Transient,
    Transport,
)
from shared.storage import tables
from shared.storage.limits import clip_text

RULES, LEDGER, MAIL_OUTBOX = "NotifyRules", "NotifyLedger", "MailOutbox"
DIGESTS = "NotifyDigest"
log = logging.getLogger("mssp_hub.notify")
_MAX_TICKS = 10**19 - 1


def parse_event(body: bytes | str) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("event is not JSON") from None
    if not isinstance(event, dict) or event.get("v") != 1 or event.get("type") != "alert":
        raise BadMessage("not a version 1 alert event")
    if not isinstance(event.get("event_id"), str) or not isinstance(event.get("alert"), dict):
        raise BadMessage("event_id or alert missing")
    try:
        event["tenant"] = parse_tenant_id(event.get("tenant", ""))
    except ValueError:
        raise BadMessage("tenant is not a GUID") from None
    return event


@dataclass
class Delivery:
    sent: int = 0
    skipped: int = 0  # already sent for this version
    refused: int = 0
    digested: int = 0  # held for the rule's next digest


def transport_for(settings: Settings) -> Transport:
    mail = settings.mail
    if mail.transport == "smtp":
        return SmtpTransport(mail.smtp_host, mail.smtp_port, mail.smtp_security,
                             mail.smtp_username, mail.smtp_password,
                             ca_bundle=settings.identity.ca_bundle)
    if mail.transport == "graph":
        tokens = tokens_for(settings.identity)
        return GraphTransport(
            lambda: tokens.token(mail.tenant_id, "https://graph.microsoft.com/.default"),
            mail.graph_base_url, mail.sender, ca_bundle=settings.identity.ca_bundle)
    return RecordOnly()


class Notifier:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        storage = settings.storage
        self.settings, self.transport = settings, transport
        self.rules = RuleRepository(tables.table(storage, RULES))
        self.ledger = Ledger(tables.table(storage, LEDGER))
        self.outbox = tables.table(storage, MAIL_OUTBOX)
        self.digests = DigestStore(tables.table(storage, DIGESTS))

    def _keep(self, message: EmailMessage, rule: Rule, event: dict[str, Any], state: str
              ) -> None:
        """Every email, sent or not, is kept for the portal and for audit."""
        now = datetime.now(UTC)
        self.outbox.upsert_entity({
            "PartitionKey": event["tenant"],
            "RowKey": f"{_MAX_TICKS - int(now.timestamp() * 10**7):019d}:{uuid.uuid4().hex[:8]}",
            "Rule": rule.id, "EventId": event["event_id"][:500], "State": state,
            "Subject": str(message["Subject"]), "To": str(message["To"]), "At": now,
            "MessageId": str(message["Message-ID"]),
            "Text": clip_text(message.get_body(("plain",)).get_content())})

    def message(self, event: dict[str, Any], rule: Rule, recipients: list[str]
                ) -> EmailMessage:
        mail = self.settings.mail
        return render(event, rule, recipients, mail.sender, mail.reply_to,
                      self.settings.onboarding.mssp_name)

    def handle(self, event: dict[str, Any]) -> Delivery:
        """Raises Transient (or ledger.Busy) to have the queue retry the event later."""
        result = Delivery()
        pending: Exception | None = None
        for rule in self.rules.for_tenant(event["tenant"]):
            if not matches(rule, event):
                continue
            recipients = recipients_for(rule, event)
            if not recipients:
                continue
            etag = self.ledger.claim(rule.id, event["event_id"], {"Tenant": event["tenant"]})
            if etag is None:
                result.skipped += 1
                continue
            if rule.delivery == "digest" or not self.digests.take_slot(rule, datetime.now(UTC)):
                self.digests.hold(rule, event, recipients,
                                  delivery_key(rule.id, event["event_id"])[1])
                self.ledger.finish(rule.id, event["event_id"], etag, "digested")
                result.digested += 1
                continue
            message = self.message(event, rule, recipients)
            try:
                state = self._deliver(message, rule, event["tenant"], event["event_id"], etag)
            except Transient as exc:
                pending = exc  # the other rules still get their email now
                continue
            if state == "sent":
                result.sent += 1
            else:
                result.refused += 1
        if pending is not None:
            raise pending
        return result

    def _deliver(self, message: EmailMessage, rule: Rule, tenant: str, key: str, etag: str
                 ) -> str:
        """Send under a ledger claim; 'sent', 'refused' or raises Transient."""
        try:
            self.transport.send(message)
        except Permanent as exc:
            self.ledger.finish(rule.id, key, etag, "refused", str(exc))
            self._keep(message, rule, {"tenant": tenant, "event_id": key}, f"refused: {exc}"[:200])
            return "refused"
        except Transient:
            self.ledger.release(rule.id, key, etag)
            raise
        self.ledger.finish(rule.id, key, etag, "sent")
        self._keep(message, rule, {"tenant": tenant, "event_id": key}, "sent")
        return "sent"

    def send_digests(self, now: datetime | None = None) -> dict[str, int]:
        """Every rule with held events whose window has passed gets one digest email."""
        now = now or datetime.now(UTC)
        sent: dict[str, int] = {}
        for rule in self.rules.all():
            rows = self.digests.held(rule.id)
            window = rule if rule.delivery == "digest" else replace(rule, digest_minutes=60)
            if not self.digests.due(window, rows, now):
                continue
            batch, rows = self.digests.assign(rule.id, rows)
            key = f"digest:{batch}"
            try:
                etag = self.ledger.claim(rule.id, key, {"Tenant": rule.scope})
            except Busy:
                continue
            if etag is not None:
                mail = self.settings.mail
                message = render_digest(rule, rows, mail.sender, mail.reply_to,
                                        self.settings.onboarding.mssp_name)
                try:
                    self._deliver(message, rule, rule.scope, key, etag)
                except Transient as exc:
                    log.warning("digest of rule %s not sent yet: %s", rule.id, exc)
                    continue
            self.digests.done(rule.id, rows)
            sent[rule.id] = len(rows)
        return sent

    def send_test(self, rule: Rule) -> list[str]:
        """A sample alert to the rule's recipients, outside the ledger; raises on failure."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        event = {"tenant": rule.scope if rule.scope != GLOBAL else str(uuid.UUID(int=0)),
                 "tenant_name": "Test tenant", "change": "new", "changed": {},
                 "event_id": f"test:{uuid.uuid4().hex}",
                 "alert": {"id": "test-alert", "title": f"Test email for rule {rule.name}",
                           "severity": "Informational", "status": "New",
                           "category": "General", "detectionSource": "mssp-hub",
                           "alertCreationTime": now, "lastUpdateTime": now,
                           "computerDnsName": "test-device", "rbacGroupName": "Test group",
                           "description": "This is a test of your notification rule.",
                           "mitreTechniques": [], "evidence": [], "evidenceCount": 0}}
        recipients = [r["address"] for r in rule.recipients]
        self.transport.send(self.message(event, rule, recipients))
        return recipients
