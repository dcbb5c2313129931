"""Notification rules, modelled on Defender's own: per tenant or MSSP-wide."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.model import SEVERITIES
from shared.validation import ValidationError

STATUSES = ("New", "InProgress", "Resolved")
GLOBAL = "*"  # the partition of MSSP-wide rules
_EMAIL = re.compile(r"^[^@\s<>,;\"'\\]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_FIELDS = {"name", "enabled", "severities", "device_groups", "categories",
           "detection_sources", "statuses", "on_new", "on_update", "include_org_name",
           "include_portal_link", "include_device", "recipients", "tenants",
           "exclude_tenants", "delivery", "digest_minutes", "max_per_hour",
           "min_severity"}


@dataclass
class Rule:
    id: str
    scope: str  # a tenant id, or GLOBAL
    name: str
    recipients: list[dict[str, str]]  # [{"address", "added_at"}]
    enabled: bool = True
    severities: list[str] = field(default_factory=list)  # empty: all
    min_severity: str | None = None  # instead of a set: this one and above
    device_groups: list[str] = field(default_factory=list)  # rbacGroupName; empty: all
    categories: list[str] = field(default_factory=list)
    detection_sources: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    on_new: bool = True
    on_update: bool = False
    include_org_name: bool = True
    include_portal_link: bool = True
    include_device: bool = True
    tenants: list[str] = field(default_factory=list)  # global rules: only these (empty: all)
    exclude_tenants: list[str] = field(default_factory=list)  # global rules: all but these
    delivery: str = "each"  # each | digest
    digest_minutes: int = 60
    max_per_hour: int | None = None  # emails per hour; the overflow goes to the next digest

    def public(self) -> dict[str, Any]:
        return asdict(self)


def _strings(body: dict[str, Any], name: str, allowed: tuple[str, ...] | None,
             errors: list[dict[str, str]]) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 200
                                              for v in value):
        errors.append({"field": name, "message": "a list of strings"})
        return []
    if allowed:
        bad = [v for v in value if v not in allowed]
        if bad:
            errors.append({"field": name, "message": f"unknown {', '.join(bad)[:100]}; "
                                                     f"use {', '.join(allowed)}"})
    return list(dict.fromkeys(value))


def _bool(body: dict[str, Any], name: str, default: bool, errors: list[dict[str, str]]
          ) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        errors.append({"field": name, "message": "true or false"})
        return default
    return value


def parse_rule(body: Any, scope: str, existing: Rule | None = None) -> Rule:
    """Validate a rule's JSON; every bad field is named. Keeps recipients' added_at."""
    if not isinstance(body, dict):
        raise ValidationError([{"field": "body", "message": "must be a JSON object"}])
    errors: list[dict[str, str]] = [{"field": k, "message": "unknown field"}
                                    for k in sorted(set(body) - _FIELDS)]
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 120 or any(
            ord(c) < 32 for c in name):
        errors.append({"field": "name", "message": "1 to 120 printable characters"})
    addresses = body.get("recipients")
    if not isinstance(addresses, list) or not addresses:
        errors.append({"field": "recipients", "message": "at least one email address"})
        addresses = []
    elif len(addresses) > 50:
        errors.append({"field": "recipients", "message": "at most 50"})
    bad = [a for a in addresses if not isinstance(a, str) or not _EMAIL.match(a)]
    if bad:
        errors.append({"field": "recipients",
                       "message": f"not an email address: {str(bad[0])[:80]}"})
    rule = Rule(id=existing.id if existing else uuid.uuid4().hex, scope=scope,
                name=(name or "").strip(), recipients=[],
                enabled=_bool(body, "enabled", True, errors),
                severities=_strings(body, "severities", SEVERITIES, errors),
                device_groups=_strings(body, "device_groups", None, errors),
                categories=_strings(body, "categories", None, errors),
                detection_sources=_strings(body, "detection_sources", None, errors),
                statuses=_strings(body, "statuses", STATUSES, errors),
                on_new=_bool(body, "on_new", True, errors),
                on_update=_bool(body, "on_update", False, errors),
                include_org_name=_bool(body, "include_org_name", True, errors),
                include_portal_link=_bool(body, "include_portal_link", True, errors),
                include_device=_bool(body, "include_device", True, errors),
                tenants=_strings(body, "tenants", None, errors),
                exclude_tenants=_strings(body, "exclude_tenants", None, errors))
    rule.min_severity = body.get("min_severity")
    if rule.min_severity is not None and rule.min_severity not in SEVERITIES:
        errors.append({"field": "min_severity", "message": f"one of {', '.join(SEVERITIES)}"})
    elif rule.min_severity and rule.severities:
        errors.append({"field": "min_severity", "message": "give severities or min_severity"})
    rule.delivery = body.get("delivery", "each")
    if rule.delivery not in ("each", "digest"):
        errors.append({"field": "delivery", "message": "each or digest"})
    rule.digest_minutes = body.get("digest_minutes", 60)
    if not isinstance(rule.digest_minutes, int) or isinstance(rule.digest_minutes, bool) \
            or not 5 <= rule.digest_minutes <= 1440:
        errors.append({"field": "digest_minutes", "message": "a whole number from 5 to 1440"})
    rule.max_per_hour = body.get("max_per_hour")
    if rule.max_per_hour is not None and (not isinstance(rule.max_per_hour, int)
                                          or isinstance(rule.max_per_hour, bool)
                                          or not 1 <= rule.max_per_hour <= 1000):
        errors.append({"field": "max_per_hour", "message": "empty, or 1 to 1000"})
    if scope != GLOBAL and (rule.tenants or rule.exclude_tenants):
        errors.append({"field": "tenants", "message": "only MSSP-wide rules choose tenants"})
    if not rule.on_new and not rule.on_update:
        errors.append({"field": "on_new", "message": "a rule needs on_new or on_update"})
    if errors:
        raise ValidationError(errors)
    # a recipient keeps the time it was first added: it only gets alerts raised after it
    before = {r["address"].lower(): r["added_at"] for r in (existing.recipients
                                                            if existing else [])}
    now = datetime.now(UTC).isoformat()
    rule.recipients = [{"address": a, "added_at": before.get(a.lower(), now)}
                       for a in dict.fromkeys(addresses)]
    return rule


class RuleRepository:
    """Rules partitioned by scope: a call for one tenant can only reach its partition.

    Matching reads a tenant's rules for every event; they are cached for CACHE_SECONDS
    (an edit reaches other workers within that time, this one at once).
    """

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
        if not re.fullmatch(r"[0-9a-f]{32}", rule_id or ""):
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

    def for_tenant(self, tenant_id: str) -> list[Rule]:
        """The tenant's own rules and the MSSP-wide ones that include it."""
        rules = list(self._cached(tenant_id))
        for rule in self._cached(GLOBAL):
            if rule.tenants and tenant_id not in rule.tenants:
                continue
            if tenant_id in rule.exclude_tenants:
                continue
            rules.append(rule)
        return [r for r in rules if r.enabled]
