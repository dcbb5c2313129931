"""The audit page's filters, and what it reads: the audit trail (shared/storage/audit.py,
`AuditTrail`) a page at a time from its keyset (`continuation`), filtered by tenant,
analyst, outcome and date range. The trail is append-only; the page only reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.triage.model import AuditEntry

OUTCOMES = ("done", "conflict", "refused", "throttled", "failed")
PAGE_SIZE = 50
MAX_TEXT = 200
MAX_CONTINUATION = 2_000


class AuditReader(Protocol):
    """The reads of AuditTrail the portal uses."""

    def page(self, tenant_id: str | None = None, actor_id: str | None = None,
             outcome: str | None = None, since: datetime | None = None,
             until: datetime | None = None, continuation: str | None = None,
             limit: int = PAGE_SIZE) -> tuple[Sequence[AuditEntry], str | None]: ...

    def for_alert(self, tenant_id: str, alert_id: str) -> Sequence[AuditEntry]: ...


def _day(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class AuditFilter:
    tenant: str = ""
    analyst: str = ""  # an actor id (object id, or the key's name)
    outcome: str = ""
    since: str = ""  # YYYY-MM-DD, from its start
    until: str = ""  # YYYY-MM-DD, to its end
    continuation: str = ""

    @classmethod
    def parse(cls, params: dict[str, str], tenant_ids: set[str]) -> AuditFilter:
        """Unknown values fall back to "any", as the alerts list's do."""
        tenant = params.get("tenant", "")
        outcome = params.get("outcome", "")
        since, until = params.get("since", ""), params.get("until", "")
        return cls(tenant=tenant if tenant in tenant_ids else "",
                   analyst=params.get("analyst", "").strip()[:MAX_TEXT],
                   outcome=outcome if outcome in OUTCOMES else "",
                   since=since if _day(since) else "", until=until if _day(until) else "",
                   continuation=params.get("continuation", "")[:MAX_CONTINUATION])

    def query(self) -> dict[str, Any]:
        """The keyword arguments of AuditTrail.page."""
        until = _day(self.until)
        return {"tenant_id": self.tenant or None, "actor_id": self.analyst or None,
                "outcome": self.outcome or None, "since": _day(self.since),
                "until": until + timedelta(days=1) if until else None,
                "continuation": self.continuation or None, "limit": PAGE_SIZE}

    def params(self, **changes: str) -> dict[str, str]:
        values = {"tenant": self.tenant, "analyst": self.analyst, "outcome": self.outcome,
                  "since": self.since, "until": self.until, **changes}
        return {k: v for k, v in values.items() if v}
