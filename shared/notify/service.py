"""One notify event in: for every matching rule, at most one email per alert version, and
one queued post per Teams or Slack channel (posted once by notify/channels/delivery.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

from shared.config import Settings
from shared.logsafe import clean
from shared.messages import AlertEvent, ChannelPost, ClusterEvent, IncidentEvent
from shared.microsoft.identity import tokens_for
from shared.notify.channels.cluster_posts import cluster_posts
from shared.notify.channels.compose import alert_posts, digest_posts
from shared.notify.channels.delivery import ChannelStatusStore
from shared.notify.channels.incident_posts import incident_posts
from shared.notify.clusters import cluster_matches, render_cluster
from shared.notify.digest import (
    brief,
    digest_recipients,
    due,
    pick_batch,
    render_digest,
)
from shared.notify.incidents import incident_brief, incident_matches, render_incident
from shared.notify.mail_health import MailHealth, MailHealthStore, mail_failure
from shared.notify.matching import matches, recipients_for
from shared.notify.recipients import split_recipients
from shared.notify.render import envelope, message_id, render
from shared.notify.rules import GLOBAL, Rule
from shared.notify.transport import (
    GraphTransport,
    KeptLocally,
    Permanent,
    RecordOnly,
    SmtpTransport,
    Transient,
    Transport,
)
from shared.storage.digests import DigestRepository
from shared.storage.mail_outbox import KeptEmail, MailOutbox
from shared.storage.notify_ledger import Busy, Claim, NotifyLedger, delivery_key
from shared.storage.queues import ChannelQueue
from shared.storage.rules import RuleRepository

OPS = "ops"  # the ledger owner and MailOutbox partition of ops notices
log = logging.getLogger("mssp_hub.notify")


@dataclass
class HandleResult:
    """What handling one alert event did, counted per rule."""

    sent: int = 0
    skipped: int = 0  # already sent for this version
    refused: int = 0  # no recipient could get it (recorded, not retried)
    kept: int = 0  # no mail transport: kept in MailOutbox only (MAIL_TRANSPORT=none)
    failed: int = 0  # the email could not be built (recorded, not retried)
    digested: int = 0  # held for the rule's next digest
    refused_recipients: int = 0  # addresses left out of emails that went to the others


@dataclass
class Outcome:
    state: str  # sent | refused | failed
    to: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # [{"address", "reason"}]
    note: str = ""


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


Build = Callable[[list[str], datetime, str], EmailMessage]  # (to, Date, Message-ID)
Alerts = Sequence[tuple[str, str]]  # (tenant, alert id): the alerts an email is about


class Notices(Protocol):
    """The ops notices to email (shared/notices.OpsNotices)."""

    def pending(self) -> Iterable[dict[str, Any]]: ...
    def mark(self, key: str, state: str) -> None: ...


@dataclass
class NotifyStores:
    """What the Notifier keeps and reads, built by the wiring (shared/services.py); the
    fakes of shared/storage/memory/notify.py stand in for them in unit tests."""

    rules: RuleRepository
    ledger: NotifyLedger
    digests: DigestRepository
    outbox: MailOutbox
    health: MailHealthStore
    notices: Notices
    # Teams and Slack: where each channel post is queued, and each channel's status
    channel_queue: ChannelQueue | None = None
    channel_status: ChannelStatusStore | None = None


class Notifier:
    def __init__(self, settings: Settings, transport: Transport, stores: NotifyStores
                 ) -> None:
        self.settings, self.transport = settings, transport
        self.rules, self.ledger, self.digests = stores.rules, stores.ledger, stores.digests
        self.outbox, self.notices = stores.outbox, stores.notices
        self.mail_health = MailHealth(stores.health)
        self.channel_queue, self.channel_status = stores.channel_queue, stores.channel_status

    @property
    def portal(self) -> str:
        return f"{self.settings.onboarding.public_base_url}/api/portal"

    def save_rule(self, rule: Rule) -> Rule:
        """Save a rule (API or portal); its failing channels are tried again, and the
        results of channels taken off it go."""
        saved = self.rules.save(rule)
        if self.channel_status is not None:
            self.channel_status.reset(rule.id)
            self.channel_status.forget(rule.id, keep=[c["name"] for c in rule.channels])
        return saved

    def delete_rule(self, rule: Rule) -> None:
        """Its channels' results first: a worker dying in between leaves a rule that
        posts on (and records anew), never a failing row no rule owns."""
        if self.channel_status is not None:
            self.channel_status.forget(rule.id)
        self.rules.delete(rule.scope, rule.id)

    def _queue_posts(self, posts: list[ChannelPost]) -> None:
        """One queue message per channel post; the channel worker posts it once."""
        if self.channel_queue is not None:
            for post in posts:
                self.channel_queue.post(post)

    def _keep(self, partition: str, owner: str, key: str, message: EmailMessage | None,
              outcome: Outcome, alerts: Alerts = ()) -> None:
        """Every email, sent or not, is kept for the portal and for audit: To as addressed,
        Refused with who of them (or of the rule's other addresses) did not get it."""
        text = html = ""
        if message is not None and message.get_body(("plain",)) is not None:
            text = message.get_body(("plain",)).get_content()
        if message is not None and message.get_body(("html",)) is not None:
            html = message.get_body(("html",)).get_content()
        state = {"sent": "sent", "kept": "kept locally"}.get(
            outcome.state, f"{outcome.state}: {outcome.note}")
        self.outbox.keep(KeptEmail(
            tenant_id=partition, at=datetime.now(UTC), state=state,
            subject=str(message["Subject"] or "") if message is not None else "",
            to=str(message["To"] or "") if message is not None else ", ".join(outcome.to),
            text=text, html=html, rule=owner, event_id=key,
            message_id=str(message["Message-ID"] or "") if message is not None else "",
            refused=outcome.refused, alerts=list(alerts)))

    def message(self, event: AlertEvent, rule: Rule, recipients: list[str],
                date: datetime | None = None, msgid: str | None = None) -> EmailMessage:
        mail = self.settings.mail
        return render(event, rule, recipients, mail.sender, mail.reply_to,
                      self.settings.onboarding.mssp_name, date or datetime.now(UTC),
                      msgid or message_id(rule.id, event.event_id, mail.sender),
                      portal=self.portal)

    def handle(self, event: AlertEvent | IncidentEvent | ClusterEvent) -> HandleResult:
        """Every matching rule gets its outcome, whatever another rule's: a bad address or
        an email that cannot be built is recorded for that rule alone. Raises Transient
        (or ledger.Busy) after the other rules, to have the queue retry the event; the
        rules already done are in the ledger and are not sent again."""
        if isinstance(event, IncidentEvent):
            return self.handle_incident(event)
        if isinstance(event, ClusterEvent):
            return self.handle_cluster(event)
        mssp_name = self.settings.onboarding.mssp_name

        rules = self._tenant_rules(
            event.tenant_id, lambda rule: matches(rule, event),
            lambda rule: alert_posts(rule, event, self.portal, mssp_name),
            lambda rule: recipients_for(rule, event))
        return self._email_rules(
            event.event_id, event.tenant_id, rules,
            lambda rule, to, date, msgid: self.message(event, rule, to, date, msgid),
            brief=lambda: brief(event), alerts=[(event.tenant_id, event.alert_id)])

    def handle_all(self, events: Iterable[AlertEvent | IncidentEvent | ClusterEvent]
                   ) -> list[HandleResult]:
        """Each event of a queue message (a batch), whatever another's outcome; raises
        the first Transient or Busy after all of them, to have the queue retry the
        message (the events done are in the ledger and are not sent again)."""
        results: list[HandleResult] = []
        pending: Exception | None = None
        for event in events:
            try:
                results.append(self.handle(event))
            except (Transient, Busy) as exc:
                pending = pending or exc
        if pending is not None:
            raise pending
        return results

    def handle_incident(self, event: IncidentEvent) -> HandleResult:
        """An incident version, as an alert's: per matching rule (notify/incidents.py) one
        post per channel (notify/channels/incident_posts.py) and one email, claimed in the
        ledger under the event id; a digest rule, or one over its hourly cap, holds it for
        its digest instead."""
        mssp_name = self.settings.onboarding.mssp_name

        rules = self._tenant_rules(
            event.tenant_id, lambda rule: incident_matches(rule, event),
            lambda rule: incident_posts(rule, event, self.portal, mssp_name),
            lambda rule: [r["address"] for r in rule.recipients])

        def render(rule: Rule, to: list[str], date: datetime, msgid: str) -> EmailMessage:
            mail = self.settings.mail
            return render_incident(event, rule, to, mail.sender, mail.reply_to, mssp_name,
                                   date, msgid, portal=self.portal)
        return self._email_rules(event.event_id, event.tenant_id, rules, render,
                                 brief=lambda: incident_brief(event))

    def handle_cluster(self, event: ClusterEvent) -> HandleResult:
        """A cluster version: one email per matching MSSP-wide rule (notify/clusters.py),
        claimed in the ledger under the event id like an incident's and kept in the MSSP's
        own outbox partition (GLOBAL), never a tenant's; and one post per channel of the
        rule (notify/channels/cluster_posts.py), at once whatever its delivery: no digest."""
        def rules() -> Iterator[tuple[Rule, list[str]]]:
            for rule in self.rules.mssp_wide():
                if not cluster_matches(rule, event):
                    continue
                if rule.channels:  # queued again on a retry: posted once
                    self._queue_posts(cluster_posts(rule, event, self.portal,
                                                    self.settings.onboarding.mssp_name))
                if rule.recipients:
                    yield rule, [r["address"] for r in rule.recipients]

        def render(rule: Rule, to: list[str], date: datetime, msgid: str) -> EmailMessage:
            mail = self.settings.mail
            return render_cluster(event, rule, to, mail.sender, mail.reply_to,
                                  self.settings.onboarding.mssp_name, date, msgid,
                                  portal=self.portal)
        return self._email_rules(event.event_id, GLOBAL, rules(), render)

    def _tenant_rules(self, tenant_id: str, wanted: Callable[[Rule], bool],
                      posts: Callable[[Rule], list[ChannelPost]],
                      recipients_of: Callable[[Rule], list[str]]
                      ) -> Iterator[tuple[Rule, list[str]]]:
        """The tenant's rules that want the event, with their recipients, as they are
        reached: each one's channel posts queued first (queued again on a retry: the
        channel worker posts each once); a rule posting to channels in a digest comes even
        without recipients."""
        for rule in self.rules.for_tenant(tenant_id):
            if not wanted(rule):
                continue
            digest_channels = bool(rule.channels) and rule.delivery == "digest"
            if rule.channels and not digest_channels:
                self._queue_posts(posts(rule))
            recipients = recipients_of(rule)
            if recipients or digest_channels:
                yield rule, recipients

    def _email_rules(self, event_id: str, partition: str,
                     rules: Iterable[tuple[Rule, list[str]]],
                     render: Callable[[Rule, list[str], datetime, str], EmailMessage],
                     brief: Callable[[], dict[str, Any]] | None = None,
                     alerts: Alerts = ()) -> HandleResult:
        """One email per (rule, recipients), claimed in the ledger under the event id (a
        retry sends none twice) and kept in the outbox's `partition` (`alerts`: the alerts
        it is about); with `brief`, a digest rule or one over its hourly cap holds the
        event for its digest instead. Raises the first Transient or Busy after all the
        rules (the queue retries); the other rules still get their email now."""
        result = HandleResult()
        pending: Exception | None = None
        for rule, recipients in rules:
            if isinstance(pending, Transient) and (brief is None
                                                   or rule.delivery != "digest"):
                continue  # the mail server is down: the retry sends these
            try:
                claim = self.ledger.claim(rule.id, event_id, {"Tenant": partition})
            except Busy as exc:
                pending = pending or exc
                continue
            if claim is None:
                result.skipped += 1
                continue
            if brief is not None and self._held(rule, event_id, brief, recipients, claim):
                result.digested += 1
                continue

            def build(to: list[str], date: datetime, msgid: str, rule: Rule = rule
                      ) -> EmailMessage:
                return render(rule, to, date, msgid)
            try:
                outcome = self._deliver(build, recipients, rule.id, partition, event_id,
                                        claim, alerts)
            except Transient as exc:
                pending = exc
                continue
            setattr(result, outcome.state, getattr(result, outcome.state) + 1)
            result.refused_recipients += len(outcome.refused) if outcome.state == "sent" else 0
        if pending is not None:
            raise pending
        return result

    def _held(self, rule: Rule, event_id: str, brief_of: Callable[[], dict[str, Any]],
              recipients: list[str], claim: Claim) -> bool:
        """Held for the rule's next digest (a digest rule, or one over its hourly cap),
        the claim finished as `digested`; False: the event is to be delivered now."""
        if rule.delivery != "digest" and self._slot(rule):
            return False
        self.digests.hold(rule.id, delivery_key(rule.id, event_id)[1], brief_of(),
                          recipients)
        self.ledger.finish(rule.id, event_id, claim, "digested")
        return True

    def _slot(self, rule: Rule) -> bool:
        """One of the rule's emails this hour, if its cap allows."""
        return rule.max_per_hour is None or self.digests.take_slot(
            rule.id, rule.max_per_hour, datetime.now(UTC))

    def _deliver(self, build: Build, recipients: list[str], owner: str, partition: str,
                 key: str, claim: Claim, alerts: Alerts = ()) -> Outcome:
        """Send under a ledger claim and record the outcome; raises only Transient."""
        msgid = message_id(owner, key, self.settings.mail.sender)
        to, refused = split_recipients(recipients)
        try:
            message = build(to, claim.first_at, msgid)
        except Exception as exc:  # a template or header that cannot be built: this email only
            outcome = Outcome("failed", to, refused,
                              f"cannot build the email: {type(exc).__name__}: {exc}"[:500])
            return self._record(owner, partition, key, claim, None, outcome, alerts)
        if not to:
            return self._record(owner, partition, key, claim, message, Outcome(
                "refused", [], refused, "no valid recipient"), alerts)
        try:
            by_server = self.transport.send(message)
        except KeptLocally as exc:
            return self._record(owner, partition, key, claim, message,
                                Outcome("kept", to, refused, str(exc)[:500]), alerts)
        except Permanent as exc:
            refused += [{"address": a, "reason": r} for a, r in exc.refused.items()]
            return self._record(owner, partition, key, claim, message,
                                Outcome("refused", [], refused, str(exc)[:500]), alerts)
        except Transient as exc:
            self.ledger.release(owner, key, claim, str(exc))
            self.mail_health.failed(str(exc))
            raise
        refused += [{"address": a, "reason": r} for a, r in by_server.items()]
        # at once, see docs/guarantees.md
        self.ledger.finish(owner, key, claim, "sent", "", refused)
        self.mail_health.ok()
        outcome = Outcome("sent", [a for a in to if a not in by_server], refused)
        self._keep(partition, owner, key, message, outcome, alerts)
        return outcome

    def _record(self, owner: str, partition: str, key: str, claim: Claim,
                message: EmailMessage | None, outcome: Outcome, alerts: Alerts = ()
                ) -> Outcome:
        """A permanent failure (or, with no transport, an email kept locally): final in the
        ledger, kept in MailOutbox, never retried."""
        log.log(logging.INFO if outcome.state == "kept" else logging.WARNING,
                "email %s/%s not sent: %s", owner, clean(key, 100), clean(outcome.note))
        self.ledger.finish(owner, key, claim, outcome.state, outcome.note, outcome.refused)
        self._keep(partition, owner, key, message, outcome, alerts)
        return outcome

    def send_digests(self, now: datetime | None = None) -> dict[str, int]:
        """Every rule with held events whose window has passed gets one digest email."""
        now = now or datetime.now(UTC)
        sent: dict[str, int] = {}
        mail = self.settings.mail
        for rule in self.rules.all():
            rows = self.digests.held(rule.id)
            window = rule if rule.delivery == "digest" else replace(rule, digest_minutes=60)
            if not rows or not due(window, rows, self.digests.last_sent(rule.id), now):
                continue
            batch, rows, new = pick_batch(rows)
            if new:
                self.digests.assign(rule.id, rows, batch)
            if rule.channels and rule.delivery == "digest":
                self._queue_posts(digest_posts(rule, [r.event for r in rows], batch,
                                               self.portal,
                                               self.settings.onboarding.mssp_name))
            if not digest_recipients(rows):  # a rule with channels only
                self.digests.drain(rule.id, rows)
                sent[rule.id] = len(rows)
                continue
            key = f"digest:{batch}"
            try:
                claim = self.ledger.claim(rule.id, key, {"Tenant": rule.scope})
            except Busy:
                continue
            if claim is not None:
                try:
                    self._deliver(
                        lambda to, date, msgid, rule=rule, rows=rows: render_digest(
                            rule, rows, to, mail.sender, mail.reply_to,
                            self.settings.onboarding.mssp_name, date, msgid),
                        digest_recipients(rows), rule.id, rule.scope, key, claim,
                        [(r.event.get("tenant", ""), str(r.event.get("alert", {}).get("id")))
                         for r in rows if r.event.get("type") != "incident"])
                except Transient as exc:
                    log.warning("digest of rule %s not sent yet: %s", rule.id, exc)
                    continue
            self.digests.drain(rule.id, rows)
            sent[rule.id] = len(rows)
        return sent

    def send_ops_notices(self) -> dict[str, str]:
        """Each recorded ops notice emailed once to OPS_EMAIL: {notice: outcome}."""
        if isinstance(self.transport, RecordOnly):
            return {}
        done: dict[str, str] = {}
        for row in self.notices.pending():
            to = row.get("To") or self.settings.onboarding.ops_email
            if not to:
                continue
            key = row["RowKey"]
            try:
                claim = self.ledger.claim(OPS, key, {"Tenant": row.get("Tenant", "")})
            except Busy:
                continue  # another worker is on it
            if claim is None:  # sent (or given up) before the notice row was marked
                state = self.ledger.state(OPS, key) or "sent"
            else:
                try:
                    state = self._deliver(lambda rcpt, date, msgid, row=row: self._notice(
                        row, rcpt, date, msgid), [to], OPS, OPS, key, claim).state
                except Transient:
                    break  # the next timer run tries again
            self.notices.mark(key, state)
            done[key] = state
        return done

    def _notice(self, row: dict[str, Any], to: list[str], date: datetime, msgid: str
                ) -> EmailMessage:
        mail = self.settings.mail
        message = EmailMessage()
        envelope(message, f"[{self.settings.onboarding.mssp_name[:60]}] {row.get('Subject', '')}",
                 mail.sender, to, mail.reply_to, date, msgid)
        message.set_content(f"{row.get('Body', '')}\n\n-- \nmssp-hub ops notice "
                            f"({row.get('Kind', '')})\n")
        return message

    def poison_reason(self) -> str:
        """Why a notify message was given up on, as far as this app knows."""
        failure = mail_failure(self.mail_health.store)
        if failure:
            return (f"notification failed on every attempt; mail could not be sent: "
                    f"{failure['reason']} (at {failure['at']:%Y-%m-%d %H:%M:%S} UTC)")
        return ("notification failed on every attempt; no mail failure recorded "
                "(storage errors, or another worker held the email's ledger row)")

    def send_test(self, rule: Rule) -> Outcome:
        """A sample alert to the rule's recipients, outside the ledger; an address that is
        not one is refused alone. Raises Permanent/Transient when the server fails it."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        event = AlertEvent(
            tenant_id=rule.scope if rule.scope != GLOBAL else str(uuid.UUID(int=0)),
            tenant_name="Test tenant", alert_id="test-alert", version=now, change="new",
            changed={}, event_id=f"test:{uuid.uuid4().hex}",
            alert={"id": "test-alert", "title": f"Test email for rule {rule.name}",
                   "severity": "Informational", "status": "New",
                   "category": "General", "detectionSource": "mssp-hub",
                   "alertCreationTime": now, "lastUpdateTime": now,
                   "computerDnsName": "test-device", "rbacGroupName": "Test group",
                   "description": "This is a test of your notification rule.",
                   "mitreTechniques": [], "evidence": [], "evidenceCount": 0})
        to, refused = split_recipients([r["address"] for r in rule.recipients])
        if not to:
            return Outcome("refused", [], refused, "no valid recipient")
        message = self.message(event, rule, to)
        try:
            by_server = self.transport.send(message)
        except KeptLocally as exc:
            outcome = Outcome("kept", to, refused, str(exc)[:500])
        else:
            refused += [{"address": a, "reason": r} for a, r in by_server.items()]
            outcome = Outcome("sent", [a for a in to if a not in by_server], refused)
        # what was sent (or would have been) is in the outbox like any other email
        self._keep(rule.scope, rule.id, event.event_id, message, outcome)
        return outcome
