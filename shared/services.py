"""Wiring: build each service once per process from the validated settings."""

from __future__ import annotations

import functools
from collections.abc import Callable

from shared.config import Settings, get_settings
from shared.ingest.fanout import Fanout
from shared.ingest.index_feed import IndexFeed
from shared.ingest.relay import Relay
from shared.ingest.worker import Ingestor, IngestStores
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens, tokens_for
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
from shared.storage.connection import StorageConnection
from shared.storage.digests import DigestRepository
from shared.storage.fanout_ledger import FanoutLedger
from shared.storage.ingest_state import IngestStates
from shared.storage.invitations import ConsentStateRepository, InvitationRepository
from shared.storage.mail_outbox import MailOutbox
from shared.storage.notify_ledger import NotifyLedger
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.poison_queue import PoisonQueue
from shared.storage.queue_sender import sender
from shared.storage.queues import EventQueue, FetchQueue, RelayQueue
from shared.storage.rules import RuleRepository
from shared.storage.runs import RunHistory
from shared.storage.siem_delivery import DeliverQueue, SiemDeliveryRepository
from shared.storage.siem_feed import SiemFeedRepository
from shared.storage.tenant_data import TenantData
from shared.storage.tenant_summaries import TenantSummaries
from shared.storage.tenants import TenantRepository
from shared.tenants.admin import TenantAdmin
from shared.tenants.onboarding import Onboarding
from shared.tenants.ops_notices import OpsNotices


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
        notices=OpsNotices.on(storage, settings.onboarding.ops_email))


def ingestor_for(settings: Settings, tokens: Tokens, client: DefenderClient) -> Ingestor:
    """An Ingestor on the real tables (a new one: its own writer threads)."""
    return Ingestor(settings, tokens, client, ingest_stores(settings))


@functools.cache
def ingestor() -> Ingestor:
    settings = get_settings()
    return ingestor_for(settings, tokens_for(settings.identity), DefenderClient(
        settings.fetch.timeout_seconds, settings.identity.ca_bundle))


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
                 summaries=TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES)))


@functools.cache
def relay() -> Relay:
    return relay_on(get_settings().storage)


def poison_log_on(storage: StorageConnection) -> PoisonLog:
    return PoisonLog(PoisonLogRepository(tables.table(storage, tables.POISON_LOG)),
                     TenantRepository(tables.table(storage, tables.TENANTS)))


@functools.cache
def poison_log() -> PoisonLog:
    return poison_log_on(get_settings().storage)


def poison_drain_on(storage: StorageConnection, notify_reason: Callable[[], str]
                    ) -> PoisonDrain:
    """The poison queues of every queue-triggered function, each with its reason."""
    def source(queue_name: str, reason: Callable[[], str]) -> PoisonSource:
        name = tables.poison_queue(queue_name)
        tables.queue(storage, name)  # created here: the host creates it only to give up
        return PoisonSource(queue_name, PoisonQueue(storage.queue(name, base64=False)), reason)

    return PoisonDrain(poison_log_on(storage), [
        source(tables.FETCH_QUEUE,
               lambda: "fetch failed on every attempt (maxDequeueCount)"),
        # the outbox rows stay; the tenant's next fetch re-enqueues their relay
        source(tables.RELAY_QUEUE, lambda: "relay failed on every attempt"),
        source(tables.NOTIFY_QUEUE, notify_reason),
        source(tables.SIEM_QUEUE,
               lambda: "could not be added to the SIEM feed on any attempt"),
        source(tables.SIEM_DELIVERY_QUEUE,
               lambda: "delivery run failed on every attempt (storage?)")])


@functools.cache
def poison_drain() -> PoisonDrain:
    return poison_drain_on(get_settings().storage, lambda: notifier().poison_reason())


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
    return Onboarding(settings, tokens_for(settings.identity),
                      DefenderClient(settings.fetch.timeout_seconds, settings.identity.ca_bundle),
                      tenants(), InvitationRepository(tables.table(storage, tables.INVITATIONS)),
                      ConsentStateRepository(tables.table(storage, tables.CONSENT_STATES)),
                      ops_notices())


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
        notices=OpsNotices.on(storage, settings.onboarding.ops_email)))


@functools.cache
def notifier() -> Notifier:
    settings = get_settings()
    return notifier_for(settings, transport_for(settings))


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
                  summaries=TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES)))
