"""The tenant directory: what lists show of the registry, in the registry's own partition
so that every change is written in the same transaction as the registry row it follows
(all or nothing: no crash can leave them apart).

* Name pages, `~names:<c>`: one row per first character of the tenant id (16 rows
  whatever the number of tenants), each `{tenant id: [display name, status]}` as JSON
  (split over properties of 30,000 characters). The alerts page's tenant picker and the
  overview's counts by status read these rows, not a row per tenant. `~names:~` says the
  directory is complete (written by the first tenant's `add`, or by `tools.backfill` on a
  store from before the directory); without it readers fall back to the registry.
* Attention marks, `~attention:<tenant id>`: a tenant that may need attention (consent
  revoked, unavailable, or failing). Set with every change that can put a tenant there (a
  status change, a failed fetch); a change that takes it out does not write (a fetch that
  succeeds stays one MERGE). Readers check each mark against the registry row and remove
  the marks of tenants that recovered, guarded by that row's ETag, so the marks are always
  a superset of the tenants needing attention, and what readers show is exact.

Registry rows are GUIDs: they all sort before `~`, and reads of the registry stop there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.model import TenantStatus

BOUNDARY = "~"
NAMES = "~names:"
NAMES_END = "~names;"
BUILT = NAMES + "~"
ATTENTION = "~attention:"
ATTENTION_END = "~attention;"
CHUNK = 30_000  # characters of a property (64 KiB of UTF-16: 32,768), with room
NEEDS_ATTENTION = {TenantStatus.CONSENT_REVOKED, TenantStatus.UNAVAILABLE}
Entries = dict[str, list[str]]  # tenant id -> [display name, status]


@dataclass(frozen=True)
class Listed:
    """A tenant as the directory lists it."""

    tenant_id: str
    display_name: str
    status: TenantStatus


def page_key(tenant_id: str) -> str:
    return NAMES + tenant_id[0]


def entries_of(row: Mapping[str, Any]) -> Entries:
    text = "".join(str(row.get(f"Names{n}") or "") for n in range(_chunks(row)))
    return json.loads(text) if text else {}


def _chunks(row: Mapping[str, Any]) -> int:
    return int(row.get("Chunks") or 0)


def page_entity(partition: str, row_key: str, entries: Entries) -> dict[str, Any]:
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))  # ASCII: a char a unit
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    return {"PartitionKey": partition, "RowKey": row_key, "Chunks": len(parts),
            **{f"Names{n}": part for n, part in enumerate(parts)}}


def built_entity(partition: str) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": BUILT, "At": datetime.now(UTC)}


def needs_attention(status: TenantStatus | str, failures: int) -> bool:
    """Consent revoked or unavailable, or active and failing: someone should act."""
    return status in NEEDS_ATTENTION or (status == TenantStatus.ACTIVE and failures > 0)


def may_need_attention(values: Mapping[str, Any]) -> bool:
    """A change after which the tenant may need attention: a status change (a tenant
    resumed may be failing still), or a failure."""
    return "status" in values or (values.get("consecutive_failures") or 0) > 0


def attention_entity(partition: str, tenant_id: str) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": ATTENTION + tenant_id,
            "At": datetime.now(UTC)}


def listed(entries: Entries) -> list[Listed]:
    return [Listed(tid, name, TenantStatus(status)) for tid, (name, status) in entries.items()]


def by_status(tenants: Iterable[Listed]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tenant in tenants:
        counts[str(tenant.status)] = counts.get(str(tenant.status), 0) + 1
    return counts
