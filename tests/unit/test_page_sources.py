"""What each source leaves apart from the one fetch loop (shared/ingest/page_sources.py):
where a run starts, whether it reads the whole overlap, where the query goes on after a
page and what is committed at its end. The loop itself is held by test_ingestor.py,
test_graph_fetch.py and the integration and e2e tests of both sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import timefmt
from shared.ingest import graph_cursor
from shared.ingest.page_sources import GraphPages, MdePages
from shared.ingest.schemas import GraphSchema, MdeSchema
from shared.microsoft.graph_security import Page
from shared.model import Cursor

AT = "2026-12-01T10:00:00Z"


def mde(overlap: int = 300) -> MdePages:
    return MdePages(None, "https://api.example", 100, 7, overlap)  # type: ignore[arg-type]


def graph(overlap: int = 300) -> GraphPages:
    return GraphPages(None, 5_000, 7, overlap)  # type: ignore[arg-type]


def test_an_mde_run_starts_at_the_lookback_the_overlap_or_the_continuation():
    position, covers = mde().start(None, False)
    first = timefmt.to_datetime(position.watermark)
    assert abs(first - (datetime.now(UTC) - timedelta(days=7))) < timedelta(minutes=1)
    assert (position.skip, covers) == (0, True)
    assert mde().start(Cursor(AT, 3), False) == (Cursor(timefmt.shift(AT, -300), 0), True)
    assert mde().start(Cursor(AT, 3), True) == (Cursor(AT, 3), False)
    assert mde(0).start(Cursor(AT, 3), False) == (Cursor(AT, 3), False)


def test_an_mde_query_ends_at_a_short_page_and_its_chunks_moved_the_cursor():
    pages, at = mde(), Cursor(AT, 7)
    page = iter([])
    assert pages.documents(page) is page
    assert pages.following(page, at, 100) == at
    assert pages.following(page, at, 99) is None
    assert pages.at_rest(at) is None
    assert (pages.schema, pages.checkpoints, pages.incidents) == (MdeSchema, False, False)
    with pytest.raises(RuntimeError):
        pages.restarted(at)


def test_a_graph_run_resumes_its_chain_and_reads_the_overlap_only_from_the_start():
    link = Cursor(AT, source="graph", link="https://graph.example/next/1", high=AT,
                  started=AT)
    assert graph().start(link, True) == (link, False)
    position, covers = graph().start(Cursor(AT, source="graph"), False)
    assert (position.watermark, position.link, covers) == (AT, "", True)
    assert graph(0).start(Cursor(AT, source="graph"), False)[1] is False
    assert graph().top == graph_cursor.MAX_TOP


def test_a_graph_chain_goes_on_by_its_nextlink_and_moves_the_watermark_at_its_end():
    pages = graph()
    at = Cursor(AT, source="graph", high="2026-12-01T11:00:00Z", started="2026-12-01T12:00:00Z")
    page = Page(iter([]), {"@odata.nextLink": "https://graph.example/next/2"})
    assert pages.documents(page) is page.documents
    assert pages.following(page, at, 0) == graph_cursor.at_link(at, page.next_link)
    assert pages.following(Page(iter([])), at, 1_000) is None
    assert pages.at_rest(at) == graph_cursor.ended(at)
    assert pages.restarted(graph_cursor.at_link(at, "x")).link == ""
    assert (pages.schema, pages.checkpoints, pages.incidents) == (GraphSchema, True, True)
