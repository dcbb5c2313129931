"""Push delivery state: a SiemDelivery row per output (its feed position, lease, queued
mark and back-off), changed only under its ETag so two runs of one output never
interleave; and the deliver queue, which asks for a run of one output.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from shared.messages import DeliverRequest
from shared.storage.errors import StateChanged

PK = "output"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # MERGE cannot clear a property; this stands for none
_COLUMNS = {"bucket": "Bucket", "after": "After", "owner": "Owner", "failures": "Failures",
            "lease_until": "LeaseUntil", "retry_at": "RetryAt", "queued_at": "QueuedAt",
            "last_error": "LastError", "last_error_at": "LastErrorAt",
            "last_success_at": "LastSuccessAt"}


@dataclass(frozen=True)
class OutputState:
    """One output's row; times are None when unset."""

    name: str
    bucket: str
    after: str
    owner: str = ""
    failures: int = 0
    lease_until: datetime | None = None
    retry_at: datetime | None = None
    queued_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    etag: str = ""


def _time(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) and value > NEVER else None


def _from_entity(entity: Any) -> OutputState:
    return OutputState(
        name=entity["RowKey"], bucket=str(entity.get("Bucket") or ""),
        after=str(entity.get("After") or ""), owner=str(entity.get("Owner") or ""),
        failures=int(entity.get("Failures") or 0), lease_until=_time(entity.get("LeaseUntil")),
        retry_at=_time(entity.get("RetryAt")), queued_at=_time(entity.get("QueuedAt")),
        last_error=str(entity.get("LastError") or ""),
        last_error_at=_time(entity.get("LastErrorAt")),
        last_success_at=_time(entity.get("LastSuccessAt")), etag=entity.metadata["etag"])


class SiemDeliveryRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def get(self, name: str) -> OutputState | None:
        try:
            return _from_entity(self.client.get_entity(PK, name))
        except ResourceNotFoundError:
            return None

    def create(self, name: str, bucket: str, after: str) -> OutputState:
        """The output's row, starting at (bucket, after) unless it exists already: the
        row as stored either way (created once)."""
        entity = {"PartitionKey": PK, "RowKey": name, "Bucket": bucket, "After": after,
                  "Owner": "", "Failures": 0}
        with contextlib.suppress(ResourceExistsError):
            self.client.create_entity(entity)
        return _from_entity(self.client.get_entity(PK, name))

    # ETag-guarded changes: each returns the row as changed, or raises StateChanged ------
    def mark_queued(self, state: OutputState, at: datetime) -> OutputState:
        """A deliver message was sent for the output at `at`."""
        return self._update(state, queued_at=at)

    def unqueue(self, state: OutputState) -> OutputState:
        """The queued run found the output backing off: the next tick may queue again."""
        return self._update(state, queued_at=None)

    def take_lease(self, state: OutputState, owner: str, until: datetime) -> OutputState:
        """A run of `owner` starts: it holds the output until `until` (renewed as it goes)."""
        return self._update(state, owner=owner, queued_at=None, lease_until=until)

    def advance(self, state: OutputState, bucket: str, after: str, lease_until: datetime,
                delivered_at: datetime | None = None) -> OutputState:
        """The destination took what lies before (bucket, after) (`delivered_at`: some
        events were sent): the position moves, failures clear, the lease renews."""
        changes: dict[str, Any] = {"bucket": bucket, "after": after, "failures": 0,
                                   "retry_at": None, "lease_until": lease_until}
        if delivered_at is not None:
            changes["last_success_at"] = delivered_at
        return self._update(state, **changes)

    def mark_failed(self, state: OutputState, error: str, at: datetime, failures: int,
                    retry_at: datetime) -> OutputState:
        """The destination refused a batch: the run ends and backs off until `retry_at`."""
        return self._update(state, owner="", failures=failures, last_error=error,
                            last_error_at=at, retry_at=retry_at)

    def release(self, state: OutputState) -> OutputState:
        """The run ends: the lease is free."""
        return self._update(state, owner="")

    def _update(self, state: OutputState, **changes: Any) -> OutputState:
        entity = {"PartitionKey": PK, "RowKey": state.name,
                  **{_COLUMNS[k]: NEVER if v is None else v for k, v in changes.items()}}
        try:
            result = self.client.update_entity(entity, mode=UpdateMode.MERGE, etag=state.etag,
                                               match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            raise StateChanged(f"siem output {state.name} changed under this run") from exc
        return dataclasses.replace(state, etag=result["etag"], **changes)


class DeliverQueue:
    """Asks for a delivery run of one output (the siem_deliver function takes it)."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client

    def request(self, name: str) -> None:
        self.client.send_message(DeliverRequest(name).to_message())
