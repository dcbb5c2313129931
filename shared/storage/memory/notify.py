"""In-memory notification storage: rules, ledger, digests, outbox, the mail-health row.

Same contract as shared/storage/{rules,notify_ledger,digests,mail_outbox,app_health}.py
(tests/contract/test_notify.py), each guarded by a lock so racing threads see one winner.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.notify.rules import GLOBAL, Rule, includes
from shared.storage.digests import Held
from shared.storage.limits import clip_text
from shared.storage.mail_outbox import SCAN_ROWS, KeptEmail, ticks_key
from shared.storage.memory import new_etag
from shared.storage.notify_ledger import (
    FINAL,
    Busy,
    Claim,
    ClaimLost,
    delivery_key,
    is_fresh,
)
from shared.storage.rules import RULE_ID


class MemoryRules:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], str] = {}  # (scope, id) -> the rule as JSON
        self._lock = threading.Lock()

    def save(self, rule: Rule) -> Rule:
        with self._lock:
            self._rows[(rule.scope, rule.id)] = json.dumps(rule.public())
        return rule

    def put_raw(self, scope: str, rule_id: str, body: dict[str, Any]) -> None:
        """A row as an older version wrote it (what tests put around validation)."""
        with self._lock:
            self._rows[(scope, rule_id)] = json.dumps(body)

    def get(self, scope: str, rule_id: str) -> Rule | None:
        if not RULE_ID.fullmatch(rule_id or ""):
            return None
        body = self._rows.get((scope, rule_id))
        return Rule(**json.loads(body)) if body is not None else None

    def list(self, scope: str) -> list[Rule]:
        with self._lock:
            bodies = [b for (s, _), b in self._rows.items() if s == scope]
        return sorted((Rule(**json.loads(b)) for b in bodies), key=lambda r: r.name)

    def delete(self, scope: str, rule_id: str) -> bool:
        if self.get(scope, rule_id) is None:
            return False
        with self._lock:
            self._rows.pop((scope, rule_id), None)
        return True

    def all(self) -> list[Rule]:
        with self._lock:
            keys = sorted(self._rows)
            return [Rule(**json.loads(self._rows[k])) for k in keys]

    def forget(self) -> None:
        """Nothing cached here."""

    def for_tenant(self, tenant_id: str) -> list[Rule]:
        rules = self.list(tenant_id) + [r for r in self.list(GLOBAL) if includes(r, tenant_id)]
        return [r for r in rules if r.enabled]

    def mssp_wide(self) -> list[Rule]:
        return [r for r in self.list(GLOBAL) if r.enabled]


class MemoryNotifyLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claim(self, owner: str, key: str, detail: dict[str, Any],
              now: datetime | None = None) -> Claim | None:
        pk_rk = delivery_key(owner, key)
        now = now or datetime.now(UTC)
        with self._lock:
            row = self.rows.get(pk_rk)
            if row is not None:
                if row["State"] in FINAL:
                    return None
                if row["State"] == "sending" and is_fresh(row["ClaimedAt"], now):
                    raise Busy(f"another worker is sending {owner}/{key}")
            first = row["FirstClaimedAt"] if row is not None else now
            etag = new_etag()
            self.rows[pk_rk] = {"State": "sending", "ClaimedAt": now, "FirstClaimedAt": first,
                                "EventId": key[:500], **detail, "etag": etag}
            return Claim(etag, first)

    def finish(self, owner: str, key: str, claim: Claim, state: str, note: str = "",
               refused: list[dict[str, str]] | None = None) -> None:
        with self._lock:
            row = self.rows.get(delivery_key(owner, key))
            if row is None or row["etag"] != claim.etag:
                raise ClaimLost(f"ledger row {owner}/{key} changed under the claim")
            row.update(State=state, FinishedAt=datetime.now(UTC), Note=note[:2000],
                       Refused=json.dumps(refused or [])[:30000], etag=new_etag())

    def release(self, owner: str, key: str, claim: Claim, reason: str) -> None:
        with self._lock:
            row = self.rows.get(delivery_key(owner, key))
            if row is not None and row["etag"] == claim.etag:
                row.update(State="retry", Note=reason[:2000], etag=new_etag())

    def state(self, owner: str, key: str) -> str | None:
        row = self.rows.get(delivery_key(owner, key))
        return row["State"] if row is not None else None

    def row(self, owner: str, key: str) -> dict[str, Any] | None:
        """The ledger row of an email (for tests)."""
        return self.rows.get(delivery_key(owner, key))


class MemoryDigests:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, Held]] = {}  # rule id -> key -> held event
        self._last: dict[str, datetime] = {}
        self._caps: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def hold(self, rule_id: str, key: str, event: dict[str, Any], recipients: list[str]
             ) -> None:
        with self._lock:
            self._held.setdefault(rule_id, {})[key] = Held(
                key, json.loads(json.dumps(event)), list(recipients), "", new_etag())

    def held(self, rule_id: str) -> list[Held]:
        with self._lock:
            rows = self._held.get(rule_id, {})
            return [copy.deepcopy(rows[k]) for k in sorted(rows)]

    def last_sent(self, rule_id: str) -> datetime | None:
        return self._last.get(rule_id)

    def assign(self, rule_id: str, rows: list[Held], batch: str) -> None:
        with self._lock:
            stored = self._held.get(rule_id, {})
            for start in range(0, len(rows), 100):
                chunk = rows[start:start + 100]
                if any(stored.get(r.key) is None or stored[r.key].etag != r.etag
                       for r in chunk):
                    raise RuntimeError("digest rows changed under us; retry")
                for r in chunk:
                    etag = new_etag()
                    stored[r.key].batch, stored[r.key].etag = batch, etag
                    r.batch, r.etag = batch, etag

    def take_slot(self, rule_id: str, cap: int, now: datetime) -> bool:
        key = (rule_id, f"{now:%Y%m%d%H}")
        with self._lock:
            if self._caps.get(key, 0) >= cap:
                return False
            self._caps[key] = self._caps.get(key, 0) + 1
            return True

    def drain(self, rule_id: str, rows: list[Held]) -> None:
        with self._lock:
            stored = self._held.get(rule_id, {})
            for r in rows:
                stored.pop(r.key, None)
            self._last[rule_id] = datetime.now(UTC)


class MemoryMailOutbox:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], KeptEmail] = {}
        self._by_alert: dict[tuple[str, str], dict[str, KeptEmail]] = {}
        self._lock = threading.Lock()

    def keep(self, email: KeptEmail) -> None:
        kept = copy.deepcopy(email)
        kept.event_id, kept.state = kept.event_id[:500], kept.state[:1000]
        kept.text, kept.html = clip_text(kept.text), clip_text(kept.html)
        row_key = f"{ticks_key(kept.at)}:{uuid.uuid4().hex[:8]}"
        pointer = dataclasses.replace(kept, text="", html="", refused=[], alerts=[])
        with self._lock:
            for alert in dict.fromkeys(kept.alerts):
                self._by_alert.setdefault(alert, {})[row_key] = pointer
            self._rows[(kept.tenant_id, row_key)] = kept

    def for_alert(self, tenant_id: str, alert_id: str, limit: int = 20) -> list[KeptEmail]:
        with self._lock:
            rows = self._by_alert.get((tenant_id, alert_id), {})
            return [copy.deepcopy(rows[k]) for k in sorted(rows)[:limit]]

    def recent(self, tenant_id: str | None = None, limit: int = 50, days: int = 14,
               now: datetime | None = None) -> list[KeptEmail]:
        cutoff = ticks_key((now or datetime.now(UTC)) - timedelta(days=days))
        with self._lock:
            keys = sorted(k for k in self._rows
                          if k[1] < cutoff and (not tenant_id or k[0] == tenant_id))
            found = [copy.deepcopy(self._rows[k]) for k in keys[:limit if tenant_id
                                                                 else SCAN_ROWS]]
        found.sort(key=lambda m: m.at, reverse=True)
        return found[:limit]


class MemoryAppHealth:
    def __init__(self) -> None:
        self._mail: tuple[str, datetime] | None = None

    def mail_failed(self, reason: str, at: datetime | None = None) -> None:
        self._mail = (reason[:1000], at or datetime.now(UTC))

    def mail_works(self) -> None:
        self._mail = None

    def mail_failure(self, **probe: Any) -> tuple[str, datetime] | None:
        return self._mail
