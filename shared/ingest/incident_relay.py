"""The incident outbox drained: each committed `IncidentEvent` into the portal's incident
list, then onto the notify and SIEM queues, then its outbox row dropped.

Why not the alert relay: alert outbox rows carry alert tallies and the AlertIndex; an
incident event is one row of its own, committed with the incident's row
(storage/incidents.py). The drain runs in the tenant's fetch run (which holds the
tenant's lease) after the incident chain, and first for rows a dead run left. A drain
killed between the send and the drop sends that event again at the next run: consumers
dedupe on `event_id` (the notify ledger, the SIEM feed), and the list entry is written
the same again.
"""

from __future__ import annotations

import logging

from shared.messages import BadMessage, IncidentEvent
from shared.storage.incidents import Incident, IncidentRepository
from shared.storage.queues import EventQueue

log = logging.getLogger("mssp_hub.ingest.incidents")


def incident_of(event: IncidentEvent) -> Incident:
    """What the list entry needs of an event's incident."""
    data = event.incident

    def text(name: str) -> str:
        value = data.get(name)
        return value if isinstance(value, str) else ""

    return Incident(event.tenant_id, event.incident_id, event.version, name=text("name"),
                    severity=text("severity"), status=text("status"))


class IncidentRelay:
    def __init__(self, incidents: IncidentRepository, queues: list[EventQueue]) -> None:
        self.incidents, self.queues = incidents, queues

    def drain(self, tenant_id: str) -> int:
        """Send every outbox row of the tenant, oldest version first; the events sent."""
        sent = 0
        for row_key, text in self.incidents.outbox(tenant_id):
            try:
                event = IncidentEvent.parse(text)
            except BadMessage:
                log.error("incident outbox row %s of %s is not an event: dropped", row_key,
                          tenant_id)
                self.incidents.drop_outbox(tenant_id, row_key)
                continue
            self.incidents.record_listed(incident_of(event), replaced=event.previous)
            for queue in self.queues:
                queue.send(text)
            self.incidents.drop_outbox(tenant_id, row_key)
            sent += 1
        return sent
