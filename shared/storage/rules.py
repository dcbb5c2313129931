"""Notification rules in NotifyRules, partitioned by scope (a tenant id, or GLOBAL): a call
for one tenant can only reach its partition. Row: the rule as JSON in `Body`."""

from __future__ import annotations

import json
import re
import time

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.notify.rules import GLOBAL, Rule, includes

RULE_ID = re.compile(r"[0-9a-f]{32}")


class RuleRepository:
    """Matching reads a tenant's rules for every event; they are cached for CACHE_SECONDS
    (an edit reaches other workers within that time, this one at once)."""

    CACHE_SECONDS = 30.0

    def __init__(self, client: TableClient) -> None:
        self.client = client
        self._cache: dict[str, tuple[float, list[Rule]]] = {}

    def save(self, rule: Rule) -> Rule:
        self.client.upsert_entity({"PartitionKey": rule.scope, "RowKey": rule.id,
                                   "Body": json.dumps(rule.public())}, mode=UpdateMode.REPLACE)
        self._cache.clear()
        return rule

    def get(self, scope: str, rule_id: str) -> Rule | None:
        if not RULE_ID.fullmatch(rule_id or ""):
            return None
        try:
            return Rule(**json.loads(self.client.get_entity(scope, rule_id)["Body"]))
        except ResourceNotFoundError:
            return None

    def list(self, scope: str) -> list[Rule]:
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": scope})
        return sorted((Rule(**json.loads(r["Body"])) for r in rows), key=lambda r: r.name)

    def delete(self, scope: str, rule_id: str) -> bool:
        if self.get(scope, rule_id) is None:
            return False
        self.client.delete_entity(scope, rule_id)
        self._cache.clear()
        return True

    def all(self) -> list[Rule]:
        return [Rule(**json.loads(r["Body"])) for r in self.client.list_entities()]

    def _cached(self, scope: str) -> list[Rule]:
        now = time.monotonic()
        hit = self._cache.get(scope)
        if hit and now - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        rules = self.list(scope)
        self._cache[scope] = (now, rules)
        return rules

    def forget(self) -> None:
        """Drop the cache (rows were written around this repository)."""
        self._cache.clear()

    def for_tenant(self, tenant_id: str) -> list[Rule]:
        """The tenant's own rules and the MSSP-wide ones that include it, enabled ones."""
        rules = self._cached(tenant_id) + [r for r in self._cached(GLOBAL)
                                           if includes(r, tenant_id)]
        return [r for r in rules if r.enabled]

    def mssp_wide(self) -> list[Rule]:
        """The enabled MSSP-wide rules (cluster events, which no one tenant owns)."""
        return [r for r in self._cached(GLOBAL) if r.enabled]
