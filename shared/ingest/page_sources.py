"""How each source is read page by page: all that the one fetch loop (worker.py) leaves
to the source.

The loop (budget, auth retry, requeue, deferral, chunk commits) is the same for both; what
differs is the cursor. Defender's `/api/alerts` is one query in ascending lastUpdateTime
whose cursor (watermark + skip) moves with every chunk's commit, read until a short page.
Graph's alerts_v2 is a chain of nextLinks whose watermark moves only at the chain's end
(graph_cursor.py), so a chain stopped midway is checkpointed and an expired link restarts
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from shared import timefmt
from shared.ingest import graph_cursor
from shared.ingest.schemas import GraphSchema, MdeSchema, Schema
from shared.microsoft import alert_stream
from shared.microsoft.defender import DefenderClient
from shared.microsoft.graph_security import GraphSecurityClient, Page
from shared.microsoft.identity import Tokens
from shared.model import Cursor

__all__ = ["GraphPages", "MdePages", "PageSource"]

Documents = Iterator[alert_stream.Document]  # a Defender page: its alerts as they arrive
P = TypeVar("P")  # a page as the source's client opens it


class PageSource(Protocol[P]):
    """One run's reading of one source (built per run)."""

    schema: Schema
    api: str  # who refuses fresh tokens, in the error
    checkpoints: bool  # a run that stops early commits its position (a chain's nextLink)
    incidents: bool  # the tenant's incidents are fetched after its alerts

    def start(self, committed: Cursor | None, continuation: bool) -> tuple[Cursor, bool]:
        """The run's first position, and whether the run reads the whole overlap (what it
        sees is then all `Progress.recent_at` needs)."""
        ...

    def token(self, tokens: Tokens, tenant_id: str) -> str: ...

    def read(self, token: str, position: Cursor) -> AbstractContextManager[P]:
        """The page at `position`, as the client opens it; refusals raise here or from
        its documents."""
        ...

    def documents(self, page: P) -> Iterator[alert_stream.Document]:
        """The page's alerts as they arrive, each with the JSON it came as."""
        ...

    def following(self, page: P, position: Cursor, received: int) -> Cursor | None:
        """Where the query goes on after `page` (read whole), None at its end."""
        ...

    def at_rest(self, position: Cursor) -> Cursor | None:
        """The cursor to commit at the query's end (None: the chunks' commits moved it)."""
        ...

    def restarted(self, position: Cursor) -> Cursor:
        """The position after the page's link expired."""
        ...


class MdePages:
    """Defender for Endpoint's `/api/alerts`: `lastUpdateTime ge <watermark>`, $skip."""

    schema: Schema = MdeSchema
    api = "Defender"
    checkpoints = False  # every chunk's commit moved the cursor already
    incidents = False

    def __init__(self, client: DefenderClient, base: str, page_size: int,
                 lookback_days: int, overlap: int) -> None:
        self.client, self.base, self.page_size = client, base, page_size
        self.lookback_days, self.overlap = lookback_days, overlap

    def start(self, committed: Cursor | None, continuation: bool) -> tuple[Cursor, bool]:
        if committed is None:
            first = datetime.now(UTC) - timedelta(days=self.lookback_days)
            position = Cursor(timefmt.from_datetime(first), 0)
        elif continuation or self.overlap == 0:
            position = committed
        else:
            position = Cursor(timefmt.shift(committed.watermark, -self.overlap), 0)
        return position, self.overlap > 0 and (committed is None or not continuation)

    def token(self, tokens: Tokens, tenant_id: str) -> str:
        return tokens.token(tenant_id)

    def read(self, token: str, position: Cursor) -> AbstractContextManager[Documents]:
        return self.client.page(self.base, token,
                                filter_=f"lastUpdateTime ge {position.watermark}",
                                top=self.page_size, skip=position.skip)

    def documents(self, page: Documents) -> Documents:
        return page

    def following(self, page: Documents, position: Cursor, received: int) -> Cursor | None:
        """A short page is the query's end; else it goes on where the chunks left it."""
        return None if received < self.page_size else position

    def at_rest(self, position: Cursor) -> Cursor | None:
        return None

    def restarted(self, position: Cursor) -> Cursor:
        raise RuntimeError("Defender's /api/alerts has no links to expire")


class GraphPages:
    """Graph's alerts_v2: a chain of nextLinks from `lastUpdateDateTime ge <watermark -
    overlap>`, its watermark moved at the chain's end (graph_cursor.py)."""

    schema: Schema = GraphSchema
    api = "Graph"
    checkpoints = True
    incidents = True

    def __init__(self, graph: GraphSecurityClient, page_size: int, lookback_days: int,
                 overlap: int) -> None:
        self.graph, self.top = graph, min(page_size, graph_cursor.MAX_TOP)
        self.lookback_days, self.overlap = lookback_days, overlap

    def start(self, committed: Cursor | None, continuation: bool) -> tuple[Cursor, bool]:
        now = timefmt.from_datetime(datetime.now(UTC))
        position = graph_cursor.start(committed, now, self.lookback_days, self.overlap)
        # without a link, this run reads the chain (and the overlap) from its start
        return position, self.overlap > 0 and not position.link

    def token(self, tokens: Tokens, tenant_id: str) -> str:
        return tokens.token(tenant_id, graph_cursor.SCOPE)

    def read(self, token: str, position: Cursor) -> AbstractContextManager[Page]:
        return self.graph.alerts(token, since=graph_cursor.since(position, self.overlap),
                                 top=self.top, link=position.link)

    def documents(self, page: Page) -> Documents:
        return page.documents

    def following(self, page: Page, position: Cursor, received: int) -> Cursor | None:
        """The page's nextLink (known once its alerts are all read), else the end."""
        link = page.next_link
        return graph_cursor.at_link(position, link) if link else None

    def at_rest(self, position: Cursor) -> Cursor | None:
        return graph_cursor.ended(position)

    def restarted(self, position: Cursor) -> Cursor:
        return graph_cursor.restarted(position)
