"""The tenant's alert counts, kept by the relay as it sends events: each chunk's counts
change in the same transaction as the chunk is recorded sent, so a chunk sent twice
(a relay that died before recording it) counts once, and an event in the outbox twice (a
worker that died between the steps of a split commit) counts once by its hash.

What an event changes: a new alert is +1 open at its severity (if open) and +1 raised on
its creation day; an update moves the open count by its status and severity before and
after (the event's `changed` has both when they changed), and moves its raised count to
the new severity. Days older than KEEP_DAYS are not kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from shared.storage.errors import StateChanged
from shared.storage.ingest_state import IngestState, Tally
from shared.storage.tenant_summaries import (
    OPEN_STATUSES,
    Counts,
    TenantSummaries,
    first_day,
    next_seq,
)

SEEN = 4_000  # event hashes kept: a duplicate further back than that would count twice
HASH = 8


def event_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=HASH).digest()


def apply(counts: Counts, event: dict[str, Any], first: str, sign: int = 1) -> None:
    """Move `counts` by what the event changes (`sign` -1: take it back)."""
    alert, changed = event.get("alert") or {}, event.get("changed") or {}
    status, severity = alert.get("status"), str(alert.get("severity") or "")
    day = str(alert.get("alertCreationTime") or "")[:10]
    day_kept = day if day >= first else None
    if event.get("change") == "new":
        counts.add(severity, day_kept, sign if status in OPEN_STATUSES else 0, sign)
        return
    old_status = changed["status"][0] if "status" in changed else status
    old_severity = str(changed["severity"][0] or "") if "severity" in changed else severity
    moved = old_severity != severity
    counts.add(old_severity, day_kept, -sign if old_status in OPEN_STATUSES else 0,
               -sign if moved else 0)
    counts.add(severity, day_kept, sign if status in OPEN_STATUSES else 0,
               sign if moved else 0)


def counted(tally: Tally, events: Iterable[dict[str, Any]], today: date) -> Tally:
    """The tally after `events`, skipping those it counted already; `seq` moves on."""
    seen = [tally.seen[i:i + HASH] for i in range(0, len(tally.seen), HASH)]
    known = set(seen)
    counts = Counts(dict(tally.counts.open),
                    {d: dict(v) for d, v in tally.counts.raised.items()},
                    next_seq(tally.counts.seq))
    first = first_day(today)
    for event in events:
        mark = event_hash(str(event.get("event_id")))
        if mark in known:
            continue
        known.add(mark)
        seen.append(mark)
        apply(counts, event, first)
    return Tally(counts.trimmed(today), b"".join(seen[-SEEN:]), tally.copied, tally.etag)


def uncounted(tally: Tally, events: Iterable[dict[str, Any]], today: date) -> Counts:
    """`tally`'s counts without what `events` will add once counted (those not counted
    already): where a tally must start so that counting them ends at a recount."""
    known = {tally.seen[i:i + HASH] for i in range(0, len(tally.seen), HASH)}
    counts = Counts(dict(tally.counts.open),
                    {d: dict(v) for d, v in tally.counts.raised.items()}, tally.counts.seq)
    first = first_day(today)
    for event in events:
        mark = event_hash(str(event.get("event_id")))
        if mark not in known:
            known.add(mark)
            apply(counts, event, first, -1)
    return counts


class TallyKeeper:
    """One relay run's tally: read once the run holds the relay lease, changed with each
    chunk recorded, copied to the summaries at the end."""

    def __init__(self, state: IngestState, summaries: TenantSummaries | None,
                 clock: Any = None) -> None:
        self.state, self.summaries = state, summaries
        self.clock = clock or (lambda: datetime.now(UTC))
        self.tally: Tally | None = None

    def record(self, row_key: str, sent: int, etag: str, chunk: list[dict[str, Any]]) -> str:
        """`mark_sent` with the chunk counted; StateChanged when another relay moved on."""
        if self.tally is None:
            self.tally = self.state.tally()
        after = counted(self.tally, chunk, self.clock().date())
        etag = self.state.mark_sent_counted(row_key, sent, etag, after)
        self.tally = after
        return etag

    def publish(self, tenant_id: str) -> None:
        """Copy the counts to the summaries if they are newer than the last copy, and mark
        them copied (a copy that fails is done again by the next run: `pending`)."""
        if self.summaries is None:
            return
        if self.tally is None:
            self.tally = self.state.tally()
        tally = self.tally
        if tally.etag is None or tally.copied >= tally.counts.seq:
            return
        self.summaries.publish(tenant_id, tally.counts)
        tally.copied = tally.counts.seq
        try:
            self.state.save_tally(tally)
        except StateChanged:  # another relay took over: it copies again
            return
