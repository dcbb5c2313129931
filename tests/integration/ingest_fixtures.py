"""Ingestion against Azurite and the simulator: settings, seeding, reading results back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.simulator.client import SimulatorClient
from devtools.simulator.server import Simulator
from shared.config import Settings
from shared.ingest.fanout import DUE_FIELDS, seen
from shared.ingest.relay import Relay
from shared.ingest.worker import Ingestor
from shared.messages import AlertEvent, FetchRequest, queue_events
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant, TenantStatus
from shared.services import ingestor_for, relay_on
from shared.storage import tables
from shared.storage.alert_rows import OVERFLOW_MARK, read_alert
from shared.storage.connection import StorageConnection
from shared.storage.keys import encode_key
from shared.storage.tenants import TenantRepository
from tests.helpers import app_env


def ingest_env(simulator: Simulator, storage: StorageConnection, **overrides: str
               ) -> dict[str, str]:
    values = {"AzureWebJobsStorage": storage.connection_string or "",
              "MSSP_CLIENT_ID": simulator.config.client_id,
              "MSSP_CLIENT_SECRET": simulator.config.client_secret,
              "MSSP_TRIAGE_CLIENT_ID": simulator.config.triage_client_id,
              "MSSP_TRIAGE_CLIENT_SECRET": simulator.config.triage_client_secret,
              "MSSP_AUTHORITY_HOST": simulator.base_url,
              "MSSP_DEFENDER_API_BASE": simulator.base_url,
              "MSSP_CA_BUNDLE": str(simulator.config.ca_path)}
    return app_env(**{**values, **overrides})


PIPELINE_SETTINGS = {"FETCH_PAGE_SIZE": "100", "FETCH_OVERLAP_SECONDS": "300"}


@dataclass
class Pipeline:
    """One ingest pipeline (as a worker process builds it) plus helpers to look inside."""

    simulator: Simulator
    sim: SimulatorClient
    storage: StorageConnection
    settings: Settings
    ingestor: Ingestor
    relay: Relay
    # incident events met on the queues by `events` (graph tenants'), in order
    incident_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tenants(self) -> TenantRepository:
        return self.ingestor.tenants

    def add_tenant(self, name: str, alerts: int = 0, **sim_options: Any) -> Tenant:
        created = self.sim.add_tenant(name, consent=[self.simulator.config.client_id],
                                      **sim_options)
        if alerts:
            self.sim.generate(created["id"], alerts, age_seconds=600)
        return self.tenants.add(Tenant(created["id"], name))

    def with_settings(self, **overrides: str) -> Pipeline:
        """The same pipeline with other settings (a worker configured otherwise)."""
        settings = Settings.from_env(ingest_env(self.simulator, self.storage,
                                                **{**PIPELINE_SETTINGS, **overrides}))
        ingestor = ingestor_for(settings, self.ingestor.tokens, self.ingestor.client)
        return dataclasses.replace(self, settings=settings, ingestor=ingestor)

    def fetch(self, tenant: Tenant | str, continuation: bool = False):
        tenant_id = tenant if isinstance(tenant, str) else tenant.tenant_id
        return self.ingestor.run(FetchRequest(tenant_id, continuation))

    def fanned_out(self, tenant: Tenant | str) -> FetchRequest:
        """The fetch message the fan-out sends for the tenant now (with the tenant as it
        reads it)."""
        tenant_id = tenant if isinstance(tenant, str) else tenant.tenant_id
        found = next(t for t in self.tenants.with_status(TenantStatus.ACTIVE, DUE_FIELDS)
                     if t.tenant_id == tenant_id)
        return FetchRequest(tenant_id, seen=seen(found))

    def rows(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """Every stored alert of a tenant, rebuilt from its rows, by alert id."""
        entities = list(self.ingestor.alerts.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": tenant_id}))
        mains = [e for e in entities if OVERFLOW_MARK not in e["RowKey"]]
        found = {}
        for main in mains:
            extra = [e for e in entities
                     if e["RowKey"].startswith(main["RowKey"] + OVERFLOW_MARK)]
            found[main["AlertId"]] = read_alert(main, extra)
        return found

    def row(self, tenant_id: str, alert_id: str) -> Any:
        return self.ingestor.alerts.client.get_entity(tenant_id, encode_key(alert_id))

    def events(self, tenant_id: str) -> list[dict[str, Any]]:
        """Relay, then take this tenant's events off both queues; they must agree. Its
        incident events (graph tenants') are kept apart, in `incident_events`."""
        self.relay.relay(tenant_id)
        notify, notify_incidents = self._take(tenant_id, tables.NOTIFY_QUEUE)
        siem, siem_incidents = self._take(tenant_id, tables.SIEM_QUEUE)
        assert sorted(e["event_id"] for e in notify) == sorted(e["event_id"] for e in siem)
        assert sorted(e["event_id"] for e in notify_incidents) == sorted(
            e["event_id"] for e in siem_incidents)
        self.incident_events.extend(notify_incidents)
        return notify

    def _take(self, tenant_id: str, queue: str
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        client = tables.queue(self.storage, queue)
        found: list[dict[str, Any]] = []
        incidents: list[dict[str, Any]] = []
        while True:
            batch = list(client.receive_messages(messages_per_page=32, max_messages=32,
                                                 visibility_timeout=30))
            if not batch:
                return found, incidents
            for message in batch:
                # an alert event, a batch of them, or an incident event
                for event in queue_events(message.content):
                    if event.tenant_id == tenant_id:
                        (found if isinstance(event, AlertEvent) else incidents
                         ).append(event.dump())
                client.delete_message(message)


@pytest.fixture
def pipeline(simulator: Simulator, sim: SimulatorClient, storage_env: StorageConnection
             ) -> Iterator[Pipeline]:
    settings = Settings.from_env(ingest_env(simulator, storage_env, **PIPELINE_SETTINGS))
    ingestor = ingestor_for(settings, Tokens(settings.identity),
                            DefenderClient(10, settings.identity.ca_bundle))
    yield Pipeline(simulator, sim, storage_env, settings, ingestor, relay_on(storage_env))


@pytest.fixture
def registry(storage_env: StorageConnection) -> TenantRepository:
    """The tenant registry with every other test's active tenant paused (out of scope)."""
    repo = TenantRepository(tables.table(storage_env, tables.TENANTS))
    for tenant in repo.with_status(TenantStatus.ACTIVE):
        repo.set_status(tenant.tenant_id, TenantStatus.PAUSED, "isolated by a test")
    return repo
