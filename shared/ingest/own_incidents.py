"""The MSSP's own change of a graph tenant's incident, stored at once from Graph's answer:
the incident's row at the answered version and one event (`by` = who acted) in one
transaction (storage/incidents.py `store_own`), and the portal's list entry.

Why no own-change mark, as alerts have: the incident fetch classifies by the stored row
alone (incident_fetch.py), and this row is the one it compares, so the fetch that reads
the answered version finds it stored and makes no second event. When this store does not
happen (the row moved on, or the hub has not stored the incident yet) the fetch makes
that version's event without `by`: incident rules fire only on a new incident or a rise
in severity, which triage never sets, so no email follows either way.

The event waits in the tenant's incident outbox and is drained by the next fetch run
(its opening counts waiting events), as a dead run's would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.ingest.incident_fetch import event_of, parse
from shared.ingest.own_changes import Stored, actor_of
from shared.microsoft.defender import DefenderError
from shared.storage.incidents import IncidentRepository
from shared.storage.tenants import TenantRepository
from shared.triage.model import Actor


class OwnIncidents:
    def __init__(self, incidents: IncidentRepository, tenants: TenantRepository) -> None:
        self.incidents, self.tenants = incidents, tenants

    def store(self, tenant_id: str, document: dict[str, Any],
              actor: Actor | Mapping[str, str]) -> Stored:
        """Store the incident as Graph answered an update (its PATCH answer, or a read
        back with `$expand=alerts`). Storage errors are raised: the change is then the
        next fetch's."""
        try:
            answered = parse(tenant_id, document)
        except DefenderError:
            return Stored(False, "Graph's answer has no id or lastUpdateDateTime")
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            return Stored(False, "the tenant is not registered")
        old = self.incidents.get(tenant_id, answered.incident_id)
        if old is None:
            return Stored(False, "the hub has not stored this incident yet; the next "
                                 "fetch stores it")
        if old.version >= answered.version:
            return Stored(True, "stored already")
        if "alerts" not in document:  # a PATCH answers without its alerts: keep them
            answered = replace(answered, alert_ids=old.alert_ids)
        event = replace(event_of(tenant, answered, old), by=actor_of(actor))
        if not self.incidents.store_own(answered, event.to_message(), old.version):
            return Stored(False, "a fetch stored this incident meanwhile; the next fetch "
                                 "stores this change")
        self.incidents.record_listed(answered, replaced=old.version)
        return Stored(True, "stored", event=True)
