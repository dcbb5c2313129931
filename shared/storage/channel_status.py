"""Each channel's last result, and whether it is failing, in NotifyChannels: PartitionKey
the rule id, RowKey the channel's name (encoded). A failing channel (its webhook answered
403/404/410...) is posted to no more until the rule is saved again (`reset`), a test post
succeeds, or its setting holds another URL (`Fingerprint`). What the tenant page and the
health check read; never the URL itself."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared.storage.keys import decode_key, encode_key

HEALTH_ROWS = 200  # failing rows the health check reads at most


@dataclass(frozen=True)
class ChannelState:
    rule_id: str
    name: str
    scope: str  # the rule's: a tenant id, or "*"
    result: str  # "sent", "rate limited: …", "failing: 404 …", "error: …"
    at: datetime
    failing: bool
    reason: str = ""
    fingerprint: str = ""  # of the URL the failure was seen on


class ChannelStatusRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def _put(self, state: ChannelState) -> None:
        self.client.upsert_entity({
            "PartitionKey": state.rule_id, "RowKey": encode_key(state.name),
            "Scope": state.scope, "Result": state.result[:1000], "At": state.at,
            "Failing": state.failing, "Reason": state.reason[:1000],
            "Fingerprint": state.fingerprint}, mode=UpdateMode.REPLACE)

    def record(self, rule_id: str, name: str, scope: str, result: str) -> None:
        """A post went (or was deferred, or may work later): not failing."""
        self._put(ChannelState(rule_id, name, scope, result, datetime.now(UTC), False))

    def mark_failing(self, rule_id: str, name: str, scope: str, reason: str,
                     fingerprint: str = "") -> None:
        self._put(ChannelState(rule_id, name, scope, f"failing: {reason}",
                               datetime.now(UTC), True, reason, fingerprint))

    def get(self, rule_id: str, name: str) -> ChannelState | None:
        rows = list(self.client.query_entities(
            "PartitionKey eq @pk and RowKey eq @rk",
            parameters={"pk": rule_id, "rk": encode_key(name)}))
        return _state(rows[0]) if rows else None

    def for_rule(self, rule_id: str) -> list[ChannelState]:
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": rule_id})
        return sorted((_state(r) for r in rows), key=lambda s: s.name)

    def reset(self, rule_id: str) -> None:
        """The rule was saved: its failing channels are tried again (their last result
        stays until the next post)."""
        for state in self.for_rule(rule_id):
            if state.failing:
                self._put(ChannelState(rule_id, state.name, state.scope, state.result,
                                       state.at, False))

    def forget(self, rule_id: str, keep: Collection[str] = ()) -> None:
        """The rule was deleted, or channels taken off it: their rows go, but `keep`'s
        (names, any case). A failing row left behind would keep the health check
        degraded for a channel nothing posts to any more."""
        kept = {name.lower() for name in keep}
        for state in self.for_rule(rule_id):
            if state.name.lower() not in kept:
                self.client.delete_entity(rule_id, encode_key(state.name))  # gone: fine

    def failing(self, limit: int = HEALTH_ROWS, **probe: Any) -> list[ChannelState]:
        """The failing channels (at most `limit`); `probe`: the health check's request
        options (no retries, short timeouts)."""
        rows = self.client.query_entities("Failing eq true", results_per_page=limit, **probe)
        found = []
        for row in rows:
            if len(found) >= limit:
                break
            found.append(_state(row))
        return sorted(found, key=lambda s: (s.rule_id, s.name))


def _state(row: dict) -> ChannelState:
    return ChannelState(rule_id=row["PartitionKey"], name=decode_key(row["RowKey"]),
                        scope=row.get("Scope", ""), result=row.get("Result", ""),
                        at=row["At"], failing=bool(row.get("Failing")),
                        reason=row.get("Reason", ""), fingerprint=row.get("Fingerprint", ""))
