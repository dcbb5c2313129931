"""Values read out of an alert document that may hold anything (attacker-influenced,
and Microsoft adds fields): text or None, a dict or {}, a list or [], never an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(value: Any) -> str | None:
    """Text or None: a number becomes its text, a structure (not text) is dropped."""
    if type(value) is str or value is None:  # the usual cases first: it runs ~100x an alert
        return value
    if isinstance(value, dict | list | tuple):
        return None
    return value if isinstance(value, str) else str(value)


def mapped(value: Any, table: Mapping[str, str | None]) -> str | None:
    """Graph's spelling in the hub's canonical one; an unknown value as it came."""
    found = text(value)
    return table.get(found, found) if found is not None else None


def upper_first(value: Any) -> str | None:
    found = text(value)
    return found[:1].upper() + found[1:] if found else found


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def texts(value: Any) -> tuple[str, ...]:
    """The non-empty texts of a list (anything else: none)."""
    return tuple(t for t in (text(v) for v in value) if t) if isinstance(value, list) else ()


def kind(item: Mapping[str, Any]) -> str:
    """A Graph evidence item's type without its namespace ("fileEvidence")."""
    return (text(item.get("@odata.type")) or "").rpartition(".")[2].lstrip("#")
