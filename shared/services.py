"""Wiring: build each service once per process from the validated settings."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.config import Settings, get_settings
from shared.correlation.service import Correlation
from shared.ingest.fanout import Fanout
from shared.ingest.incident_relay import IncidentRelay
from shared.ingest.index_feed import IndexFeed
from shared.ingest.own_changes import OwnChanges, Stored
from shared.ingest.own_incidents import OwnIncidents
from shared.ingest.relay import Relay
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import BadMessage, BulkTriageRequest
from shared.microsoft.defender import DefenderClient
from shared.microsoft.graph_security import GraphSecurityClient
from shared.microsoft.identity import Tokens, tokens_for
from shared.model import Tenant, TenantStatus
from shared.notify.channels.delivery import ChannelDelivery, ChannelStores
from shared.notify.channels.transport import Poster, WebhookPoster
from shared.notify.channels.webhooks import Webhooks
from shared.notify.service import Notifier, NotifyStores, transport_for
from shared.notify.transport import Transport
from shared.ops.poison import PoisonDrain, PoisonLog, PoisonSource
from shared.portal.pages import Portal
from shared.siem.delivery import SiemDelivery
from shared.siem.feed import Feed
from shared.siem.outputs import Output
from shared.storage import tables
from shared.storage.alert_index import AlertIndex
from shared.storage.alerts import AlertRepository
from shared.storage.app_health import AppHealth
from shared.storage.audit import AuditTrail
from shared.storage.bulk_jobs import BulkJobs
from shared.storage.call_budget import CallBudget
from shared.storage.channel_status import ChannelStatusRepository
from shared.storage.connection import StorageConnection
from shared.storage.correlation import CorrelationStore
from shared.storage.digests import DigestRepository
from shared.storage.fanout_ledger import FanoutLedger
from shared.storage.incidents import IncidentRepository
from shared.storage.ingest_state import IngestStates
from shared.storage.invitations import ConsentStateRepository, InvitationRepository
from shared.storage.mail_outbox import MailOutbox
from shared.storage.notify_ledger import NotifyLedger
from shared.storage.own_marks import OwnMarks
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.poison_queue import PoisonQueue
from shared.storage.queue_sender import sender
from shared.storage.queues import BulkQueue, ChannelQueue, EventQueue, FetchQueue, RelayQueue
from shared.storage.rules import RuleRepository
from shared.storage.runs import RunHistory
from shared.storage.siem_delivery import DeliverQueue, SiemDeliveryRepository
from shared.storage.siem_feed import SiemFeedRepository
from shared.storage.tenant_data import TenantData
from shared.storage.tenant_summaries import TenantSummaries
from shared.storage.tenants import TenantRepository
from shared.tenants.admin import TenantAdmin
from shared.tenants.oidc import OpenIdClient
from shared.tenants.onboarding import ConsentApp, Onboarding
from shared.tenants.ops_notices import OpsNotices
from shared.tenants.source_move import SourceMove
from shared.triage.bulk import CALL_TIMEOUT, BulkStores, BulkTriage, Hooks
from shared.triage.incident_service import IncidentTriage
from shared.triage.model import Actor, AuditEntry, Change
from shared.triage.service import TriageService


def ingest_stores(settings: Settings) -> IngestStores:
    """What a fetch reads and writes, on the real tables and queues."""
    storage = settings.storage
    return IngestStores(
        tenants=TenantRepository(tables.table(storage, tables.TENANTS)),
        alerts=AlertRepository(tables.table(storage, tables.ALERTS)),
        states=IngestStates(tables.table(storage, tables.INGEST_STATE)),
        runs=RunHistory(tables.table(storage, tables.RUN_HISTORY)),
        app_health=AppHealth(tables.table(storage, tables.APP_HEALTH)),
        fetch_queue=FetchQueue(tables.queue(storage, tables.FETCH_QUEUE)),
        relay_queue=RelayQueue(tables.queue(storage, tables.RELAY_QUEUE)),
        notices=OpsNotices.on(storage, settings.onboarding.ops_email),
        own_marks=OwnMarks(tables.table(storage, tables.OWN_CHANGE_MARKS)),
        incidents=incidents_repo(settings) if settings.fetch.graph_incidents else None,
        incident_relay=IncidentRelay(incidents_repo(settings), [
            EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE)),
            EventQueue(tables.queue(storage, tables.SIEM_QUEUE))]))


def incidents_repo(settings: Settings) -> IncidentRepository:
    """Graph tenants' incidents and the portal's list of them."""
    return IncidentRepository(tables.table(settings.storage, tables.INCIDENTS),
                              tables.table(settings.storage, tables.INCIDENT_INDEX))


def ingestor_for(settings: Settings, tokens: Tokens, client: DefenderClient) -> Ingestor:
    """An Ingestor on the real tables (a new one: its own writer threads); a tenant that
    consented to the triage app is fetched with its tokens."""
    identity = settings.identity
    triage = tokens_for(identity.app("triage")) if identity.triage_enabled else None
    return Ingestor(settings, tokens, client, ingest_stores(settings), triage_tokens=triage,
                    graph=graph_security(settings))


@functools.cache
def ingestor() -> Ingestor:
    settings = get_settings()
    return ingestor_for(settings, tokens_for(settings.identity), DefenderClient(
        settings.fetch.timeout_seconds, settings.identity.ca_bundle))


def own_changes_on(storage: StorageConnection) -> OwnChanges:
    """The MSSP's own changes on the real tables: marks, ingest state, alert rows."""
    return OwnChanges(OwnMarks(tables.table(storage, tables.OWN_CHANGE_MARKS)),
                      IngestStates(tables.table(storage, tables.INGEST_STATE)),
                      AlertRepository(tables.table(storage, tables.ALERTS)),
                      TenantRepository(tables.table(storage, tables.TENANTS)),
                      RelayQueue(tables.queue(storage, tables.RELAY_QUEUE)))


@functools.cache
def own_changes() -> OwnChanges:
    return own_changes_on(get_settings().storage)


def expect_own(tenant_id: str, alert_ids: Iterable[str],
               fields: Change | Mapping[str, Any], actor: Actor) -> None:
    """For TriageService and bulk jobs: before Defender is asked to change alerts."""
    own_changes().expect(tenant_id, alert_ids, fields, actor)


def store_own(tenant_id: str, document: dict[str, Any], actor: Actor) -> Stored:
    """For TriageService: the alert Defender answered a PATCH with, stored at once."""
    return own_changes().store(tenant_id, document, actor)


def fanout_on(storage: StorageConnection) -> Fanout:
    tables.queue(storage, tables.FETCH_QUEUE)  # created here: the lean sender does not
    return Fanout(TenantRepository(tables.table(storage, tables.TENANTS)),
                  FanoutLedger(tables.table(storage, tables.FANOUT_LEDGER)),
                  FetchQueue(sender(storage, tables.FETCH_QUEUE)))


@functools.cache
def fanout() -> Fanout:
    return fanout_on(get_settings().storage)


def relay_on(storage: StorageConnection) -> Relay:
    return Relay(IngestStates(tables.table(storage, tables.INGEST_STATE)),
                 EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE)),
                 EventQueue(tables.queue(storage, tables.SIEM_QUEUE)),
                 RelayQueue(tables.queue(storage, tables.RELAY_QUEUE)),
                 index=IndexFeed(AlertIndex(tables.table(storage, tables.ALERT_INDEX)),
                                 AlertRepository(tables.table(storage, tables.ALERTS))),
                 summaries=TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES)),
                 correlate=EventQueue(tables.queue(storage, tables.CORRELATE_QUEUE)))


@functools.cache
def relay() -> Relay:
    return relay_on(get_settings().storage)


def correlation_on(settings: Settings) -> Correlation:
    """Cross-tenant indicator correlation on the real tables and queues."""
    storage = settings.storage
    tenants = TenantRepository(tables.table(storage, tables.TENANTS))

    def active_tenants() -> int:
        listed = tenants.directory()
        if listed is None:
            return sum(1 for t in tenants.all() if t.status == TenantStatus.ACTIVE)
        return sum(1 for t in listed if t.status == TenantStatus.ACTIVE)

    return Correlation(
        CorrelationStore(tables.table(storage, tables.CORRELATION),
                         tables.table(storage, tables.CORRELATION_INDEX)),
        EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE)),
        EventQueue(tables.queue(storage, tables.SIEM_QUEUE)), settings.correlation,
        active_tenants,
        AlertRepository(tables.table(storage, tables.ALERTS)).alert_and_schema)


@functools.cache
def correlation() -> Correlation:
    return correlation_on(get_settings())


def poison_log_on(storage: StorageConnection) -> PoisonLog:
    return PoisonLog(PoisonLogRepository(tables.table(storage, tables.POISON_LOG)),
                     TenantRepository(tables.table(storage, tables.TENANTS)))


@functools.cache
def poison_log() -> PoisonLog:
    return poison_log_on(get_settings().storage)


def poison_drain_on(storage: StorageConnection, notify_reason: Callable[[], str]
                    ) -> PoisonDrain:
    """The poison queues of every queue-triggered function, each with its reason."""
    def source(queue_name: str, reason: Callable[[str], str],
               settle: Callable[[str, str], None] | None = None) -> PoisonSource:
        name = tables.poison_queue(queue_name)
        tables.queue(storage, name)  # created here: the host creates it only to give up
        return PoisonSource(queue_name, PoisonQueue(storage.queue(name, base64=False)), reason,
                            settle)

    def bulk_given_up(body: str, reason: str) -> None:
        """The tenant's part of a bulk job is over: its pending alerts fail with why."""
        try:
            request = BulkTriageRequest.parse(body)
        except BadMessage:
            return
        bulk_triage().give_up(request, reason)

    return PoisonDrain(poison_log_on(storage), [
        source(tables.FETCH_QUEUE,
               lambda _: "fetch failed on every attempt (maxDequeueCount)"),
        # the outbox rows stay; the tenant's next fetch re-enqueues their relay
        source(tables.RELAY_QUEUE, lambda _: "relay failed on every attempt"),
        source(tables.NOTIFY_QUEUE, lambda _: notify_reason()),
        source(tables.SIEM_QUEUE,
               lambda _: "could not be added to the SIEM feed on any attempt"),
        source(tables.CORRELATE_QUEUE,
               lambda _: "indicators could not be indexed on any attempt"),
        source(tables.SIEM_DELIVERY_QUEUE,
               lambda _: "delivery run failed on every attempt (storage?)"),
        source(tables.BULK_QUEUE, lambda _: "bulk triage failed on every attempt",
               bulk_given_up),
        source(tables.CHANNEL_QUEUE, lambda body: channel_delivery().poison_reason(body))])


@functools.cache
def poison_drain() -> PoisonDrain:
    return poison_drain_on(get_settings().storage, lambda: notifier().poison_reason())


@functools.cache
def alert_index() -> AlertIndex:
    return AlertIndex(tables.table(get_settings().storage, tables.ALERT_INDEX))


@functools.cache
def tenants() -> TenantRepository:
    return TenantRepository(tables.table(get_settings().storage, tables.TENANTS))


@functools.cache
def ops_notices() -> OpsNotices:
    settings = get_settings()
    return OpsNotices.on(settings.storage, settings.onboarding.ops_email)


@functools.cache
def onboarding() -> Onboarding:
    settings = get_settings()
    storage = settings.storage
    identity = settings.identity
    triage = ConsentApp(tokens_for(identity.app("triage")), OpenIdClient(
        identity.app("triage"), settings.onboarding.redirect_uri)
    ) if identity.triage_enabled else None
    return Onboarding(settings, tokens_for(settings.identity),
                      DefenderClient(settings.fetch.timeout_seconds, settings.identity.ca_bundle),
                      tenants(), InvitationRepository(tables.table(storage, tables.INVITATIONS)),
                      ConsentStateRepository(tables.table(storage, tables.CONSENT_STATES)),
                      ops_notices(), triage=triage, graph=graph_security(settings))


def graph_security(settings: Settings) -> GraphSecurityClient:
    return GraphSecurityClient(settings.fetch.graph_base_url, settings.fetch.timeout_seconds,
                               settings.identity.ca_bundle)


@functools.cache
def source_move() -> SourceMove:
    """Moves tenants from mde to graph, probing with the app each consented to."""
    settings = get_settings()
    identity = settings.identity
    triage = tokens_for(identity.app("triage")) if identity.triage_enabled else None

    def tokens_of(tenant: Tenant) -> Tokens:
        if tenant.consent_app == "triage" and triage is not None:
            return triage
        return tokens_for(identity)
    return SourceMove(tenants(), tokens_of, graph_security(settings))


@functools.cache
def tenant_admin() -> TenantAdmin:
    storage = get_settings().storage
    return TenantAdmin(tenants(), TenantData(tables.table(storage, tables.ALERTS),
                                             tables.table(storage, tables.INGEST_STATE),
                                             AlertIndex(tables.table(storage,
                                                                     tables.ALERT_INDEX))))


def notifier_for(settings: Settings, transport: Transport) -> Notifier:
    """A Notifier on the real tables (a new one: its own rule cache and mail-health clock)."""
    storage = settings.storage
    return Notifier(settings, transport, NotifyStores(
        rules=RuleRepository(tables.table(storage, tables.NOTIFY_RULES)),
        ledger=NotifyLedger(tables.table(storage, tables.NOTIFY_LEDGER)),
        digests=DigestRepository(tables.table(storage, tables.NOTIFY_DIGESTS)),
        outbox=MailOutbox(tables.table(storage, tables.MAIL_OUTBOX)),
        health=AppHealth(tables.table(storage, tables.APP_HEALTH)),
        notices=OpsNotices.on(storage, settings.onboarding.ops_email),
        channel_queue=ChannelQueue(tables.queue(storage, tables.CHANNEL_QUEUE)),
        channel_status=ChannelStatusRepository(tables.table(storage, tables.NOTIFY_CHANNELS))))


@functools.cache
def notifier() -> Notifier:
    settings = get_settings()
    return notifier_for(settings, transport_for(settings))


def channel_delivery_for(settings: Settings, poster: Poster) -> ChannelDelivery:
    """Teams and Slack posts on the real tables and queue, through `poster`."""
    storage, base = settings.storage, settings.onboarding.public_base_url
    return ChannelDelivery(ChannelStores(
        rules=RuleRepository(tables.table(storage, tables.NOTIFY_RULES)),
        ledger=NotifyLedger(tables.table(storage, tables.NOTIFY_LEDGER)),
        status=ChannelStatusRepository(tables.table(storage, tables.NOTIFY_CHANNELS)),
        queue=ChannelQueue(tables.queue(storage, tables.CHANNEL_QUEUE))),
        Webhooks.from_environ(base), poster, settings.onboarding.mssp_name,
        f"{base}/api/portal")


@functools.cache
def channel_delivery() -> ChannelDelivery:
    settings = get_settings()
    return channel_delivery_for(settings, WebhookPoster(settings.identity.ca_bundle))


def webhooks() -> Webhooks:
    """What checks a rule's channels when it is saved (the API, the portal)."""
    return Webhooks.from_environ(get_settings().onboarding.public_base_url)


def feed_on(storage: StorageConnection, settle_seconds: int, retention_days: int) -> Feed:
    """A Feed on the real tables (tests and benchmarks build their own)."""
    return Feed(SiemFeedRepository(tables.table(storage, tables.SIEM_FEED)),
                AlertRepository(tables.table(storage, tables.ALERTS)),
                settle_seconds, retention_days)


def siem_delivery_on(storage: StorageConnection, feed: Feed, outputs: tuple[Output, ...]
                     ) -> SiemDelivery:
    """SIEM delivery on the real table and queue."""
    return SiemDelivery(SiemDeliveryRepository(tables.table(storage, tables.SIEM_DELIVERY)),
                        DeliverQueue(tables.queue(storage, tables.SIEM_DELIVERY_QUEUE)),
                        feed, outputs)


@functools.cache
def feed() -> Feed:
    settings = get_settings()
    return feed_on(settings.storage, settings.siem.settle_seconds, settings.siem.retention_days)


@functools.cache
def delivery() -> SiemDelivery:
    settings = get_settings()
    return siem_delivery_on(settings.storage, feed(), settings.siem.outputs)


@functools.cache
def portal() -> Portal:
    notify = notifier()
    storage = get_settings().storage
    return Portal(get_settings(), tenant_admin(), notify.rules, notify.outbox, onboarding(),
                  ops_notices(), AlertRepository(tables.table(storage, tables.ALERTS)),
                  RunHistory(tables.table(storage, tables.RUN_HISTORY)),
                  alert_index=AlertIndex(tables.table(storage, tables.ALERT_INDEX)),
                  siem_status=lambda: delivery().status(),
                  summaries=TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES)),
                  feed=SiemFeedRepository(tables.table(storage, tables.SIEM_FEED)),
                  triage=triage(), audit=AuditTrail(tables.table(storage, tables.AUDIT_TRAIL)),
                  bulk=bulk_triage(), channels=channel_delivery(),
                  source_move=source_move(), incidents=incidents_repo(get_settings()),
                  incident_triage=incident_triage(), correlation=correlation())


def consented_app_token(settings: Settings, tokens: Tokens) -> Callable[..., str]:
    """A tenant's token from the app it consented to: a write needs the triage app's
    Alert.ReadWrite.All when the tenant trusts that app (`tokens`: the main app's)."""
    identity = settings.identity
    triage = tokens_for(identity.app("triage")) if identity.triage_enabled else None

    def token(tenant: Tenant, scope: str | None = None) -> str:
        chosen = triage if tenant.consent_app == "triage" and triage is not None else tokens
        return chosen.token(tenant.tenant_id, scope)
    return token


def triage_on(settings: Settings, tokens: Tokens, client: DefenderClient) -> TriageService:
    """Triage on the real tables (tests build theirs with their own tokens and client)."""
    storage = settings.storage
    own = own_changes_on(storage)
    return TriageService(settings, TenantRepository(tables.table(storage, tables.TENANTS)),
                         AlertRepository(tables.table(storage, tables.ALERTS)),
                         AuditTrail(tables.table(storage, tables.AUDIT_TRAIL)), client, tokens,
                         expect_own=own.expect, store_own=own.store,
                         token_for=consented_app_token(settings, tokens),
                         graph=graph_security(settings))


@functools.cache
def triage() -> TriageService:
    settings = get_settings()
    return triage_on(settings, tokens_for(settings.identity), DefenderClient(
        settings.fetch.timeout_seconds, settings.identity.ca_bundle))


def incident_triage_on(settings: Settings, tokens: Tokens) -> IncidentTriage:
    """Incident triage of graph tenants on the real tables (tests give their tokens)."""
    storage = settings.storage
    incidents = incidents_repo(settings)
    tenants = TenantRepository(tables.table(storage, tables.TENANTS))
    return IncidentTriage(tenants, incidents, AuditTrail(tables.table(
        storage, tables.AUDIT_TRAIL)), tokens, graph_security(settings),
        store_own=OwnIncidents(incidents, tenants).store,
        token_for=consented_app_token(settings, tokens))


@functools.cache
def incident_triage() -> IncidentTriage:
    settings = get_settings()
    return incident_triage_on(settings, tokens_for(settings.identity))


def bulk_hooks(storage: StorageConnection) -> Hooks:
    """What a bulk job does around its calls: the audit trail, own-change marks and
    copies, and a 403 making the tenant read-only."""
    audit = AuditTrail(tables.table(storage, tables.AUDIT_TRAIL))
    own = own_changes_on(storage)
    tenants = TenantRepository(tables.table(storage, tables.TENANTS))

    def record(entries: list[AuditEntry]) -> None:
        for entry in entries:
            audit.record(entry)

    return Hooks(record=record, expect=own.expect, store=own.store,
                 forbidden=lambda tenant_id, why: tenants.set_access(tenant_id, "read", why))


def bulk_triage_on(settings: Settings, tokens: Tokens, client: DefenderClient,
                   hooks: Hooks) -> BulkTriage:
    """Bulk triage on the real tables and queue, with `client` and `hooks` as given."""
    storage = settings.storage
    return BulkTriage(
        BulkStores(jobs=BulkJobs(tables.table(storage, tables.BULK_JOBS)),
                   budget=CallBudget(tables.table(storage, tables.CALL_BUDGET)),
                   tenants=TenantRepository(tables.table(storage, tables.TENANTS)),
                   queue=BulkQueue(tables.queue(storage, tables.BULK_QUEUE))),
        client, hooks, token=consented_app_token(settings, tokens),
        base=lambda t: settings.identity.api_base(t.region), graph=graph_security(settings))


@functools.cache
def bulk_triage() -> BulkTriage:
    settings = get_settings()
    return bulk_triage_on(settings, tokens_for(settings.identity), DefenderClient(
        CALL_TIMEOUT, settings.identity.ca_bundle), bulk_hooks(settings.storage))
