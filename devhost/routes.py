"""Route templates as the Functions host reads them: `items/{id}`, `{id:int}`, `{x?}`, `{*rest}`.

Literal segments match case-insensitively (ASP.NET routing); parameter values are
percent-decoded; more literal routes win over more general ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")
_CONSTRAINTS = {
    None: r"[^/]+",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    target: Any

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.fullmatch(path.strip("/"))
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items() if v is not None}


def compile_route(template: str, target: Any) -> Route:
    """Translate one template into an anchored regular expression."""
    parts: list[str] = []
    literals = 0
    for segment in template.strip("/").split("/"):
        m = _PARAM.fullmatch(segment)
        if m is None:
            if "{" in segment or "}" in segment:
                raise ValueError(f"route {template!r}: unsupported segment {segment!r}")
            parts.append("/" + re.escape(segment))
            literals += 1
            continue
        star, name, constraint, optional = m.groups()
        if constraint not in _CONSTRAINTS:
            raise ValueError(f"route {template!r}: unknown constraint {constraint!r}")
        body = r".*" if star else _CONSTRAINTS[constraint]
        group = f"/(?P<{name}>{body})"
        parts.append(f"(?:{group})?" if optional or star else group)
    return Route(template, re.compile("(?i:" + "".join(parts)[1:] + ")"
                                      if parts else ""), literals, target)


class RouteTable:
    """All HTTP functions, matched most-specific first."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, template: str, target: Any) -> None:
        self.routes.append(compile_route(template, target))
        self.routes.sort(key=lambda r: (-r.literal_segments, "*" in r.template))

    def find(self, path: str) -> list[tuple[Route, dict[str, str]]]:
        """Every route matching `path` (several can, differing by method)."""
        found = []
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                found.append((route, params))
        return found
