"""Table and queue names, and creating them once per process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.storage.connection import StorageConnection

TENANTS = "Tenants"
ALERTS = "Alerts"
INGEST_STATE = "IngestState"
RUN_HISTORY = "RunHistory"
POISON_LOG = "PoisonLog"
APP_HEALTH = "AppHealth"
SIEM_FEED = "SiemFeed"
SIEM_DELIVERY = "SiemDelivery"
FANOUT_LEDGER = "FanoutLedger"
# the portal's alert list: every tenant's alerts, newest first (storage/alert_index.py)
ALERT_INDEX = "AlertIndex"
# tenants: onboarding's invitations and consent attempts, and the ops notices
INVITATIONS = "Invitations"
CONSENT_STATES = "ConsentStates"
OPS_NOTICES = "OpsNotices"

# Notifications: rules, the exactly-once ledger, held digest events, every email kept
NOTIFY_RULES = "NotifyRules"
NOTIFY_LEDGER = "NotifyLedger"
NOTIFY_DIGESTS = "NotifyDigest"
MAIL_OUTBOX = "MailOutbox"
# Notification channels (Teams, Slack): each channel's last result and failing mark
# (storage/channel_status.py); one queue message per post (notify/channels/delivery.py)
NOTIFY_CHANNELS = "NotifyChannels"

# Tenant summaries: each tenant's alert counts, copied by the relay for the portal overview
TENANT_SUMMARIES = "TenantSummaries"

# Own changes: what the MSSP asked Defender to set, so ingest can tell its own (own_marks.py)
OWN_CHANGE_MARKS = "OwnChangeMarks"
# Triage: every action on a customer's alert, once, append-only (storage/audit.py)
AUDIT_TRAIL = "AuditTrail"
# Triage bulk actions: jobs with their per-tenant work and per-alert outcomes
# (storage/bulk_jobs.py), each tenant's Defender call budget (storage/call_budget.py)
BULK_JOBS = "BulkJobs"
CALL_BUDGET = "CallBudget"
# Incidents of graph tenants: rows, fetch cursor and event outbox per tenant, and the
# portal's cross-tenant list (storage/incidents.py)
INCIDENTS = "Incidents"
INCIDENT_INDEX = "IncidentIndex"
# Correlation: per indicator its sightings, tenants' reach, cluster head and events, and
# the suppressions; the list page's clusters by recency and reach (storage/correlation.py)
CORRELATION = "Correlation"
CORRELATION_INDEX = "CorrelationIndex"

FETCH_QUEUE = "fetch-requests"
RELAY_QUEUE = "alert-relay"
NOTIFY_QUEUE = "notify-events"
SIEM_QUEUE = "siem-events"
SIEM_DELIVERY_QUEUE = "siem-deliveries"
BULK_QUEUE = "bulk-triage"  # one tenant's part of a bulk job
CHANNEL_QUEUE = "notify-channels"  # one post to one Teams or Slack channel
# alert events copied by the relay for cross-tenant indicator correlation (shared/correlation/)
CORRELATE_QUEUE = "correlate-events"


# Poison queues: the host moves a message there after maxDequeueCount; a timer drains them
def poison_queue(queue_name: str) -> str:
    return f"{queue_name}-poison"

_created: set[tuple[str, ...]] = set()
_lock = threading.Lock()


def _once(key: tuple[str, ...], create: Callable[[], object]) -> None:
    """Create a table or queue the first time this process uses it (it may exist)."""
    if key in _created:
        return
    with contextlib.suppress(ResourceExistsError):
        create()
    with _lock:
        _created.add(key)


def _where(storage: StorageConnection) -> str:
    return storage.connection_string or storage.table_service_uri or storage.name


def table(storage: StorageConnection, name: str) -> TableClient:
    """A client for table `name`, created on first use."""
    client = storage.table_service().get_table_client(name)
    _once((_where(storage), "table", name), client.create_table)
    return client


def queue(storage: StorageConnection, name: str) -> QueueClient:
    """A base64 client for queue `name` (as the host reads it), created on first use."""
    client = storage.queue(name)
    _once((_where(storage), "queue", name), client.create_queue)
    return client
