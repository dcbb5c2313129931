"""The README is a front page and the detail lives in docs/: every link between them, and
every #anchor, must lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "infra" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, re.M)}


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


def test_the_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```sh\n")
    assert start < readme.index("\n## "), "the commands come before any section"
    first = readme[start + len("```sh\n"):readme.index("```", start + 3)]
    assert [line.split()[:2] for line in first.strip().splitlines()] == [
        ["make", "run"], ["make", "test"]]


def test_every_feature_has_a_page_and_the_readme_links_them_all():
    readme_links = set(_links(ROOT / "README.md"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme_links, f"README does not link docs/{page.name}"
    assert "```mermaid\nflowchart" in (ROOT / "README.md").read_text()


def test_relative_links_and_anchors_resolve():
    broken = []
    for page in PAGES:
        for link in _links(page):
            if re.match(r"[a-z]+:", link):
                continue  # http(s), mailto: not checked here
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, broken
